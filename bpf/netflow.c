//go:build ignore

// Kernel side of netflowtcpend. Two cgroup_skb programs watch the TCP
// segments of every socket in a cgroup and write one record into a ring
// buffer when a socket's connection ends (its first accepted FIN or RST);
// they also copy the DNS messages the sockets send to and receive from port
// 53, from which user space builds its cache of names. A cgroup/sock_create
// program remembers which process made each socket, tracepoints on TCP sends
// and reads name the process that owns an accepted socket, and a tracepoint
// on socket state changes reports the ends that no FIN or RST marks.
//
// The cgroup programs are observers: they return 1 (let the packet through,
// let the socket be created) on every path. Returning 0 would drop the
// packet for every socket in the cgroup.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "netflow.h"
#include "ring.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define PASS 1

// TCP header flags (byte 13 of the header).
#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_ACK 0x10

// Socket states (include/net/tcp_states.h).
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define TCP_LISTEN 10
#define TCP_CLOSING 11

#define SOCK_RAW 3
#define AF_INET 2
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

// errno values the state tracepoint tells apart.
#define ECONNRESET 104
#define ETIMEDOUT 110
#define ECONNREFUSED 111

// sock_state.flags
#define SOCK_OUTGOING (1 << 0)      // the socket sent the SYN
#define SOCK_FROM_LISTENER (1 << 1) // state copied from a listener: accepted socket
#define SOCK_ENDED (1 << 2)         // the end record was written
#define SOCK_LOST (1 << 3)          // an end record could not be written (ring full)
#define SOCK_IGNORE (1 << 4)        // the collector's own socket (exclude_self)
#define SOCK_OWNER_FROM_IO (1 << 5) // owner: the process that sent or read on it

// How many IPv6 extension headers the parser walks before giving up.
#define MAX_IPV6_EXT 6

// Per-socket state, freed by the kernel together with the socket. BPF_F_CLONE
// copies a listener's state into every socket accepted from it, which is how
// an accepted socket learns that it is incoming: its own handshake is only
// ever seen on the listener.
struct sock_state {
	__u64 start_ns;
	__u32 flags;
	// With SOCK_LOST: the end that could not be written, for the retry.
	__u8 lost_reason;
	__u8 lost_by;
	__u16 _pad;
	__u64 lost_time_ns;
	// The process that created the socket (for an accepted one: that
	// created its listener, or the MPTCP socket of a subflow).
	__u32 pid;
	char exe[EXE_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_state);
} sock_states SEC(".maps");

// Sized by the loader (ring_buffer_size); this is only the default.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// Most DNS payload bytes one record can carry; dns_payload_limit, set by
// the loader, is at most this. A power of two, for the verifier.
#define DNS_PAYLOAD_MAX 8192

// Set by the loader before the programs are loaded; 0 turns DNS off.
volatile const __u32 dns_payload_limit = 4096;

// The reader is woken up each time the data waiting in the ring buffer
// crosses a multiple of 1 << wakeup_shift bytes; otherwise it finds records
// at its next tick (the flush interval). Waking it for every record would
// cost the producing CPU an interrupt and a wake-up, about 1.5 us, most of
// the programs' cost under connection churn; waking it at every record past
// a threshold would cost that for every record while the reader is behind.
volatile const __u32 wakeup_shift = 16;

// The collector's own process id, whose sockets yield nothing
// (exclude_self); 0 keeps them.
volatile const __u32 self_tgid = 0;

// A DNS record is assembled here, then copied into the ring buffer with its
// real length: reserving the maximum for every message would waste the ring.
struct dns_scratch {
	struct dns_event hdr;
	__u8 payload[DNS_PAYLOAD_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_scratch);
} dns_scratch SEC(".maps");

// Force these types into BTF so that bpf2go generates their Go twins.
const struct event *unused_event __attribute__((unused));
const struct dns_event *unused_dns_event __attribute__((unused));
const enum stat *unused_stat __attribute__((unused));
const enum record_type *unused_record_type __attribute__((unused));

// Minimal kernel types, relocated with CO-RE against the running kernel's
// BTF. Only the fields read below are declared.
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct {
		struct net *net;
	} skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	struct {
		int len;
	} sk_backlog;
	int sk_err;
	__u16 sk_protocol;
	struct {
		struct cgroup *cgroup;
	} sk_cgrp_data;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct path {
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
} __attribute__((preserve_access_index));

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct task_struct {
	struct mm_struct *mm;
} __attribute__((preserve_access_index));

struct mptcp_sock;

// Linux 6.3+; on older kernels the loader leaves it unresolved (weak) and
// records carry netns 0.
extern void *bpf_cast_to_kern_ctx(void *) __ksym __weak;

struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	struct inet_sock icsk_inet;
} __attribute__((preserve_access_index));

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u32 rcv_nxt;
	__u32 rcv_wup;
	__u32 rcv_wnd;
	__u32 snd_una;
	__u32 write_seq;
	__u32 max_window;
	__u32 srtt_us;
	__u32 segs_in;
	__u32 segs_out;
	__u32 total_retrans;
	__u64 bytes_sent;
	__u64 bytes_retrans;
	__u64 bytes_received;
} __attribute__((preserve_access_index));

// A parsed TCP segment or UDP datagram. Addresses are as on the wire; IPv4
// uses word 0.
struct segment {
	__u32 saddr[4];
	__u32 daddr[4];
	__u32 seq;
	__u32 ack_seq;
	__u32 payload_off;
	__u32 payload_len;
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u8 flags; // TCP only
};

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &stat);
	if (v)
		*v += 1;
}

// seq_before is the kernel's before(): serial number arithmetic.
static __always_inline int seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

// nothing_to_do says, from the headers in place and without a helper call,
// that a packet is a TCP segment without SYN, FIN or RST, and not DNS: the
// bulk of traffic, which costs nothing more. Anything it cannot tell (IP
// options, extension headers, headers not in the linear area) goes the
// long way.
static __always_inline int nothing_to_do(struct __sk_buff *skb, int egress)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;
	__u8 *th;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (data + 20 + 14 > end)
			return 0;
		// Version 4, no options, TCP, not a fragment.
		if (data[0] != 0x45 || data[9] != IPPROTO_TCP || ((data[6] & 0x3f) | data[7]) != 0)
			return 0;
		th = data + 20;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (data + 40 + 14 > end)
			return 0;
		if (data[6] != IPPROTO_TCP)
			return 0;
		th = data + 40;
	} else {
		return 1; // not IP
	}
	if (th[13] & (TH_SYN | TH_FIN | TH_RST))
		return 0;
	__u8 *port = egress ? th + 2 : th; // DNS: to port 53, or from it
	return !(port[0] == 0 && port[1] == 53);
}

// Parse the network and transport headers. skb->data starts at the network
// header in cgroup_skb programs. Returns 0 for anything that is not a
// complete, first-fragment TCP segment or UDP datagram.
static __always_inline int parse_segment(struct __sk_buff *skb, struct segment *seg)
{
	__u32 l4off;
	__u8 proto;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 ip[20];
		if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)))
			return 0;
		if ((ip[0] >> 4) != 4 || (ip[0] & 0x0f) < 5)
			return 0;
		// A non-first fragment carries no TCP header.
		if (((ip[6] & 0x1f) | ip[7]) != 0)
			return 0;
		proto = ip[9];
		l4off = (ip[0] & 0x0f) * 4;
		__builtin_memcpy(&seg->saddr[0], &ip[12], 4);
		__builtin_memcpy(&seg->daddr[0], &ip[16], 4);
		seg->family = FAMILY_IPV4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 ip6[40];
		if (bpf_skb_load_bytes(skb, 0, ip6, sizeof(ip6)))
			return 0;
		if ((ip6[0] >> 4) != 6)
			return 0;
		proto = ip6[6];
		l4off = 40;
		__builtin_memcpy(seg->saddr, &ip6[8], 16);
		__builtin_memcpy(seg->daddr, &ip6[24], 16);
		seg->family = FAMILY_IPV6;

#pragma unroll
		for (int i = 0; i < MAX_IPV6_EXT; i++) {
			__u8 ext[4];
			if (proto != IPPROTO_HOPOPTS && proto != IPPROTO_ROUTING &&
			    proto != IPPROTO_DSTOPTS && proto != IPPROTO_FRAGMENT &&
			    proto != IPPROTO_AH)
				break;
			if (bpf_skb_load_bytes(skb, l4off, ext, sizeof(ext)))
				return 0;
			if (proto == IPPROTO_FRAGMENT) {
				// Fragment offset in the upper 13 bits of bytes 2-3.
				if ((((__u16)ext[2] << 8 | ext[3]) & 0xfff8) != 0)
					return 0;
				l4off += 8;
			} else if (proto == IPPROTO_AH) {
				l4off += ((__u32)ext[1] + 2) * 4;
			} else {
				l4off += ((__u32)ext[1] + 1) * 8;
			}
			proto = ext[0];
		}
	} else {
		return 0;
	}

	seg->proto = proto;
	if (proto == IPPROTO_UDP) {
		__u8 uh[4];
		if (bpf_skb_load_bytes(skb, l4off, uh, sizeof(uh)) || skb->len < l4off + 8)
			return 0;
		seg->sport = (__u16)uh[0] << 8 | uh[1];
		seg->dport = (__u16)uh[2] << 8 | uh[3];
		seg->payload_off = l4off + 8;
		seg->payload_len = skb->len - l4off - 8;
		return 1;
	}
	if (proto != IPPROTO_TCP)
		return 0;

	// Ports, sequence and acknowledgment numbers, data offset and flags.
	__u8 th[14];
	if (bpf_skb_load_bytes(skb, l4off, th, sizeof(th)))
		return 0;
	__u32 doff = (th[12] >> 4) * 4;
	if (doff < 20 || skb->len < l4off + doff)
		return 0;

	seg->sport = (__u16)th[0] << 8 | th[1];
	seg->dport = (__u16)th[2] << 8 | th[3];
	seg->seq = (__u32)th[4] << 24 | (__u32)th[5] << 16 | (__u32)th[6] << 8 | th[7];
	seg->ack_seq = (__u32)th[8] << 24 | (__u32)th[9] << 16 | (__u32)th[10] << 8 | th[11];
	seg->flags = th[13];
	seg->payload_off = l4off + doff;
	seg->payload_len = skb->len - l4off - doff;
	return 1;
}

// netns_of returns the inode number of the socket's network namespace (as in
// /proc/PID/ns/net), or 0 where the kernel cannot tell.
static __always_inline __u32 netns_of(struct __sk_buff *skb)
{
	if (!bpf_cast_to_kern_ctx)
		return 0;
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct sock *sk = kskb->sk;
	if (!sk)
		return 0;
	return sk->__sk_common.skc_net.net->ns.inum;
}

// emit_dns copies a DNS message (or, for TCP, the segment's payload with its
// length prefixes) that a socket sent to port 53 or received from it.
static __always_inline void emit_dns(struct __sk_buff *skb, struct segment *seg, int egress)
{
	__u32 len = seg->payload_len;
	if (len == 0 || dns_payload_limit == 0)
		return;
	if (len > dns_payload_limit)
		len = dns_payload_limit;
	if (len > DNS_PAYLOAD_MAX)
		len = DNS_PAYLOAD_MAX;
	// The verifier wants a length it can bound without tracking the above.
	len = ((len - 1) & (DNS_PAYLOAD_MAX - 1)) + 1;

	__u32 zero = 0;
	struct dns_scratch *d = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!d)
		return;
	if (bpf_skb_load_bytes(skb, seg->payload_off, d->payload, len)) {
		count(STAT_DNS_LOST);
		return;
	}
	struct dns_event *h = &d->hdr;
	h->type = RECORD_DNS;
	h->family = seg->family;
	h->protocol = seg->proto;
	h->egress = egress;
	h->netns = netns_of(skb);
	h->payload_len = len;
	h->wire_len = seg->payload_len;
	h->time_ns = bpf_ktime_get_ns();
	h->cookie = bpf_get_socket_cookie(skb);
	__builtin_memcpy(h->saddr, seg->saddr, sizeof(h->saddr));
	__builtin_memcpy(h->daddr, seg->daddr, sizeof(h->daddr));
	h->sport = seg->sport;
	h->dport = seg->dport;
	__u64 pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (bpf_ringbuf_output(&events, d, sizeof(*h) + len, wakeup_flag(pending, sizeof(*h) + len, wakeup_shift)))
		count(STAT_DNS_LOST);
}

// accepted_by_tcp says whether TCP will act on an incoming FIN or RST. The
// ingress hook runs before TCP validates the segment, so an out-of-window or
// forged FIN/RST reaches it; such segments end nothing. This mirrors
// tcp_validate_incoming() and tcp_rcv_synsent_state_process().
static __always_inline int accepted_by_tcp(struct bpf_sock *sk, struct segment *seg)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	// No TCP state to check against (BPF_PROG_TEST_RUN's dummy socket):
	// take the segment at face value.
	if (!tp)
		return 1;

	__u32 rcv_nxt = tp->rcv_nxt;

	// Acknowledgments are bounded by write_seq, the end of what the socket
	// has queued, not by snd_nxt: on loopback a reply can arrive while the
	// sender is still inside its transmit call and has not advanced snd_nxt
	// (it then waits in the socket backlog).
	__u32 snd_una = tp->snd_una;
	__u32 write_seq = tp->write_seq;
	int ack_ok = (seg->flags & TH_ACK) && !seq_before(write_seq, seg->ack_seq);

	if (sk->state == TCP_SYN_SENT) {
		// Only a RST that acknowledges our SYN is acceptable; everything
		// else without SYN is dropped.
		return (seg->flags & TH_RST) && ack_ok && seq_before(snd_una, seg->ack_seq);
	}

	// The receive window, as tcp_receive_window() computes it.
	__s32 win = (__s32)(tp->rcv_wup + tp->rcv_wnd - rcv_nxt);
	if (win < 0)
		win = 0;
	__u32 end_seq = seg->seq + seg->payload_len + ((seg->flags & TH_FIN) ? 1 : 0);
	int in_window = !seq_before(end_seq, tp->rcv_wup) &&
			!seq_before(rcv_nxt + (__u32)win, seg->seq);

	if (!(seg->flags & TH_RST)) {
		// A FIN also needs an acceptable ACK (tcp_ack()): none, one for
		// data never sent, or one older than the largest window is dropped.
		return in_window && ack_ok && !seq_before(seg->ack_seq, snd_una - tp->max_window);
	}

	// RFC 5961: a RST is accepted only at exactly rcv_nxt (or rcv_nxt-1
	// once a FIN was received, tcp_reset_check()); other in-window RSTs only
	// draw a challenge ACK.
	if (seg->seq == rcv_nxt)
		return 1;
	if (seg->seq == rcv_nxt - 1 &&
	    (sk->state == TCP_CLOSE_WAIT || sk->state == TCP_LAST_ACK || sk->state == TCP_CLOSING))
		return 1;
	// Segments queued in the socket backlog (socket owned by a task) have
	// not advanced rcv_nxt yet; a RST behind them is checked against the
	// window, as TCP will find it exact once the backlog is processed.
	if (tp->inet_conn.icsk_inet.sk.sk_backlog.len > 0)
		return in_window;
	return 0;
}

// set_owner records the current process as the socket's owner: its process
// id and its executable's base name (not the 15-character thread name).
static __always_inline void set_owner(struct sock_state *st)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	st->pid = tgid;
	st->exe[0] = 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	if (mm) // kernel threads have none
		bpf_probe_read_kernel_str(st->exe, sizeof(st->exe), mm->exe_file->f_path.dentry->d_name.name);
	if (self_tgid && tgid == self_tgid)
		__sync_fetch_and_or(&st->flags, SOCK_IGNORE);
}

// copy_owner copies the owner of an MPTCP connection's socket to one of its
// TCP sockets, which the kernel creates without a process. For a subflow
// (confirm) that owner is as good as it gets: its I/O is the kernel's.
static __always_inline void copy_owner(struct sock_state *st, struct bpf_sock *sk, int confirm)
{
	struct mptcp_sock *msk = bpf_skc_to_mptcp_sock(sk);
	if (!msk)
		return;
	struct sock_state *parent = bpf_sk_storage_get(&sock_states, msk, 0, 0);
	if (!parent)
		return;
	st->pid = parent->pid;
	__builtin_memcpy(st->exe, parent->exe, sizeof(st->exe));
	__sync_fetch_and_or(&st->flags, (confirm ? SOCK_OWNER_FROM_IO : 0) | (parent->flags & SOCK_IGNORE));
}

// fill_counters copies the socket's TCP counters into e. The kernel counts
// an outgoing segment before the egress hook and an incoming one after the
// ingress hook: the terminating segment is added here when it came in.
static __always_inline void fill_counters(struct event *e, struct tcp_sock *tp, struct segment *seg, int egress)
{
	if (!tp)
		return; // BPF_PROG_TEST_RUN's dummy socket has no TCP state
	e->srtt_us = tp->srtt_us >> 3;
	e->bytes_sent = tp->bytes_sent - tp->bytes_retrans;
	e->bytes_received = tp->bytes_received;
	e->segs_sent = tp->segs_out;
	e->segs_received = tp->segs_in;
	e->retransmits = tp->total_retrans;
	if (!egress && seg) {
		e->segs_received++;
		// The payload that is new and in order is what TCP will count.
		__u32 rcv_nxt = tp->rcv_nxt;
		__u32 end = seg->seq + seg->payload_len;
		if (!seq_before(rcv_nxt, seg->seq) && seq_before(rcv_nxt, end))
			e->bytes_received += end - rcv_nxt;
	}
}

static __always_inline __u8 direction_of(__u32 flags)
{
	if (flags & SOCK_FROM_LISTENER)
		return DIRECTION_INCOMING;
	if (flags & SOCK_OUTGOING)
		return DIRECTION_OUTGOING;
	return DIRECTION_UNKNOWN;
}

// claim reserves a record for a socket's end and makes sure that only one
// end is ever written for it: ingress and egress may race on two CPUs. It
// returns NULL when the socket already ended or the ring buffer is full; in
// the latter case the end is saved in st so that the socket's next FIN, RST
// or close writes it after all, and the loss is counted once per socket.
static __always_inline struct event *claim(struct sock_state *st, __u32 *old, __u8 reason, __u8 by, __u64 now)
{
	if (!st)
		count(STAT_NO_STORAGE); // no once-only guard: write it anyway
	else if (st->flags & (SOCK_ENDED | SOCK_IGNORE))
		return 0; // retransmitted FIN, second FIN, RST after FIN; or ours

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		if (!st) {
			count(STAT_LOST);
		} else if (!(__sync_fetch_and_or(&st->flags, SOCK_LOST) & SOCK_LOST)) {
			st->lost_reason = reason;
			st->lost_by = by;
			st->lost_time_ns = now;
			count(STAT_LOST);
		}
		return 0;
	}
	*old = 0;
	if (st) {
		*old = __sync_fetch_and_or(&st->flags, SOCK_ENDED);
		if (*old & SOCK_ENDED) {
			bpf_ringbuf_discard(e, 0);
			return 0;
		}
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = RECORD_TCP_END;
	e->time_ns = now;
	e->end_reason = reason;
	e->end_by = by;
	if (*old & SOCK_LOST) {
		// The retry of an end that did not fit: report that end.
		e->flags = EVENT_F_RETRIED;
		e->end_reason = st->lost_reason;
		e->end_by = st->lost_by;
		e->time_ns = st->lost_time_ns;
	}
	if (st) {
		e->start_ns = st->start_ns;
		e->direction = direction_of(*old);
		// An accepted socket inherits its listener's owner, who need not
		// be the process that accepted it (pre-forked servers): only the
		// process seen sending or reading on it counts.
		if (!(*old & SOCK_FROM_LISTENER) || (*old & SOCK_OWNER_FROM_IO)) {
			e->pid = st->pid;
			__builtin_memcpy(e->exe, st->exe, sizeof(e->exe));
		}
	} else {
		e->flags |= EVENT_F_NO_STORAGE;
	}
	return e;
}

// submit hands a reserved record to the reader. The pending data counts it
// already: the producer position moved at the reservation.
static __always_inline void submit(struct event *e)
{
	__u64 pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) - ((sizeof(*e) + 8 + 7) & ~7ULL);
	bpf_ringbuf_submit(e, wakeup_flag(pending, sizeof(*e), wakeup_shift));
}

static __always_inline void emit_end(struct __sk_buff *skb, struct bpf_sock *sk,
				     struct segment *seg, int egress)
{
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	// An MPTCP subflow: its owner is the MPTCP socket's.
	if (st && (!st->pid || (st->flags & (SOCK_FROM_LISTENER | SOCK_OWNER_FROM_IO)) == SOCK_FROM_LISTENER))
		copy_owner(st, sk, 1);
	__u32 old;
	__u8 reason = (seg->flags & TH_RST) ? END_RST : END_FIN;
	struct event *e = claim(st, &old, reason, egress ? END_BY_LOCAL : END_BY_REMOTE, bpf_ktime_get_ns());
	if (!e)
		return;

	e->netns = netns_of(skb);
	e->cookie = bpf_get_socket_cookie(skb);
	e->cgroup_id = bpf_skb_cgroup_id(skb);
	e->family = seg->family;
	e->state = sk->state;
	// Source is the side that sent the terminating segment; a retried end
	// may have come from the other side than this segment.
	int local_sent = e->end_by == END_BY_LOCAL;
	if (local_sent == egress) {
		__builtin_memcpy(e->saddr, seg->saddr, sizeof(e->saddr));
		__builtin_memcpy(e->daddr, seg->daddr, sizeof(e->daddr));
		e->sport = seg->sport;
		e->dport = seg->dport;
	} else {
		__builtin_memcpy(e->saddr, seg->daddr, sizeof(e->saddr));
		__builtin_memcpy(e->daddr, seg->saddr, sizeof(e->daddr));
		e->sport = seg->dport;
		e->dport = seg->sport;
	}
	fill_counters(e, bpf_skc_to_tcp_sock(sk), seg, egress);
	submit(e);
}

// ignored says whether the packet's socket is the collector's own.
static __always_inline int ignored(struct __sk_buff *skb)
{
	if (!self_tgid)
		return 0;
	struct bpf_sock *sk = skb->sk;
	if (!sk || !(sk = bpf_sk_fullsock(sk)))
		return 0;
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	return st && (st->flags & SOCK_IGNORE);
}

static __always_inline int handle(struct __sk_buff *skb, int egress)
{
	if (nothing_to_do(skb, egress))
		return PASS;
	struct segment seg;
	if (!parse_segment(skb, &seg))
		return PASS;

	// DNS: queries the socket sends, answers it receives.
	int dns = (egress ? seg.dport : seg.sport) == 53;
	if (dns && !ignored(skb))
		emit_dns(skb, &seg, egress);
	if (seg.proto != IPPROTO_TCP)
		return PASS;

	// Fast path: data and pure ACKs need no state at all.
	if (!(seg.flags & (TH_SYN | TH_FIN | TH_RST)))
		return PASS;

	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return PASS;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return PASS;
	// The kernel's per-netns control socket (SOCK_RAW) sends the RSTs and
	// ACKs that answer segments matching no socket, and raw sockets send
	// whatever they like: neither is a connection.
	if (sk->type == SOCK_RAW)
		return PASS;

	if (sk->state == TCP_LISTEN) {
		// The handshake of an accepted socket is seen on its listener; the
		// accepted socket is cloned from it (with this state) while the
		// SYN (fast open) or the final ACK is processed. A listener itself
		// never ends.
		if (!egress && !(seg.flags & TH_RST)) {
			struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0,
								   BPF_SK_STORAGE_GET_F_CREATE);
			if (st) {
				st->start_ns = bpf_ktime_get_ns();
				st->flags = SOCK_FROM_LISTENER | (st->flags & SOCK_IGNORE);
				// An MPTCP listener's TCP listener is the kernel's:
				// take the owner of the MPTCP socket.
				if (!st->pid)
					copy_owner(st, sk, 0);
			}
		}
		return PASS;
	}

	if (seg.flags & (TH_FIN | TH_RST)) {
		if (egress || accepted_by_tcp(sk, &seg))
			emit_end(skb, sk, &seg, egress);
		return PASS;
	}

	// A SYN without ACK leaving a socket: it is connecting.
	if (egress && !(seg.flags & TH_ACK)) {
		struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0,
							   BPF_SK_STORAGE_GET_F_CREATE);
		if (st && (!(st->flags & SOCK_OUTGOING) || (st->flags & SOCK_ENDED))) {
			// New connection, or a new connect() on a socket whose
			// previous attempt ended: start over.
			st->start_ns = bpf_ktime_get_ns();
			st->flags = SOCK_OUTGOING | (st->flags & SOCK_IGNORE);
			if (!st->pid)
				copy_owner(st, sk, 1);
		}
	}
	return PASS;
}

SEC("cgroup_skb/ingress")
int netflow_ingress(struct __sk_buff *skb)
{
	return handle(skb, 0);
}

SEC("cgroup_skb/egress")
int netflow_egress(struct __sk_buff *skb)
{
	return handle(skb, 1);
}

// Connections that end without a FIN or RST: a connect or retransmission or
// keepalive timeout, an ICMP error, a connect the application gave up on.
// TCP moves the socket to CLOSE; if the cgroup programs saw the socket (it
// has state) and it has not ended yet, this is its end. It also catches the
// RST of an abortive close, which the kernel sends after the move to CLOSE,
// and a RST that TCP took although the ingress program judged it out of
// window (a backlog it could not see).
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(netflow_state, struct sock *sk, int oldstate, int newstate)
{
	if (newstate != TCP_CLOSE || oldstate == TCP_LISTEN || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (!st || (st->flags & SOCK_ENDED))
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;

	int err = sk->sk_err;
	__u8 reason = END_CLOSED, by = END_BY_LOCAL;
	if (err == 0 && (oldstate == TCP_ESTABLISHED || oldstate == TCP_SYN_RECV)) {
		// An abortive close (SO_LINGER 0, unread data): the kernel moves
		// the socket to CLOSE, then sends a RST on it.
		reason = END_RST;
	} else if (err == ECONNRESET || err == ECONNREFUSED) {
		// TCP took a RST that the ingress program did not: report it.
		reason = END_RST;
		by = END_BY_REMOTE;
		err = 0;
	} else if (err == ETIMEDOUT) {
		reason = END_TIMEOUT;
	} else if (err) {
		reason = END_ABORT;
	}
	__u32 old;
	struct event *e = claim(st, &old, reason, by, bpf_ktime_get_ns());
	if (!e)
		return 0;

	struct sock_common *skc = &sk->__sk_common;
	e->error = err;
	e->state = oldstate;
	e->netns = skc->skc_net.net->ns.inum;
	e->cookie = bpf_get_socket_cookie(sk);
	e->cgroup_id = sk->sk_cgrp_data.cgroup->kn->id;
	// inet_sport, not skc_num: on the way to CLOSE the kernel releases
	// the local port (skc_num = 0) before this tracepoint.
	__u16 lport = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport), rport = bpf_ntohs(skc->skc_dport);
	if (skc->skc_family == AF_INET) {
		e->family = FAMILY_IPV4;
		__builtin_memcpy(e->saddr, &skc->skc_rcv_saddr, 4);
		__builtin_memcpy(e->daddr, &skc->skc_daddr, 4);
	} else {
		// User space unmaps IPv4-mapped addresses of dual-stack sockets.
		e->family = FAMILY_IPV6;
		BPF_CORE_READ_INTO(&e->saddr, skc, skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->daddr, skc, skc_v6_daddr);
	}
	e->sport = lport;
	e->dport = rport;
	if (e->end_by == END_BY_REMOTE) {
		// A retried end that the remote side sent.
		__u8 tmp[16];
		__builtin_memcpy(tmp, e->saddr, 16);
		__builtin_memcpy(e->saddr, e->daddr, 16);
		__builtin_memcpy(e->daddr, tmp, 16);
		e->sport = rport;
		e->dport = lport;
	}
	fill_counters(e, tp, 0, 1);
	submit(e);
	return 0;
}

// A socket created by a process in the cgroup: remember the process. Sockets
// accepted from a listener inherit its state, so they name the process that
// created the listener. An observer: 1 lets every socket be created.
SEC("cgroup/sock_create")
int netflow_sock_create(struct bpf_sock *sk)
{
	if (sk->protocol != IPPROTO_TCP && sk->protocol != IPPROTO_MPTCP && sk->protocol != IPPROTO_UDP)
		return 1;
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (st)
		set_owner(st);
	return 1;
}

// The owner of an accepted socket: the process that first sends or reads on
// it, which is the one that accepted it (a pre-forked server's worker, not
// the parent that made the listener) or the one it was handed to. Both
// tracepoints fire in that process, for TCP sockets only; they cost a socket
// storage lookup per send and per read that copies data. Optional: a kernel
// without them names no process for incoming connections.
static __always_inline void confirm_owner(struct sock *sk)
{
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (!st || (st->flags & (SOCK_FROM_LISTENER | SOCK_OWNER_FROM_IO)) != SOCK_FROM_LISTENER)
		return;
	set_owner(st);
	__sync_fetch_and_or(&st->flags, SOCK_OWNER_FROM_IO);
}

SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(netflow_send, struct sock *sk)
{
	confirm_owner(sk);
	return 0;
}

SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(netflow_recv, struct sock *sk)
{
	confirm_owner(sk);
	return 0;
}
