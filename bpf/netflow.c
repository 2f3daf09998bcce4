//go:build ignore

// Kernel side of netflowtcpend. Two cgroup_skb programs watch the TCP
// segments of every socket in a cgroup and write one record into a ring
// buffer when a socket's connection ends (its first accepted FIN or RST);
// they also copy the DNS messages the sockets send to and receive from port
// 53, from which user space builds its cache of names. A cgroup/sock_create
// program remembers which process made each socket, tracepoints on TCP sends
// and reads name the process that owns an accepted socket, and a tracepoint
// on socket state changes reports the ends that no FIN or RST marks, and
// one on cgroup creation reports each new cgroup's path.
//
// The cgroup programs are observers: they return 1 (let the packet through,
// let the socket be created) on every path. Returning 0 would drop the
// packet for every socket in the cgroup.
//
// This file holds the maps, the load-time constants and the programs. What
// the programs do is in headers, one concern each: kernel.h (the kernel's
// types, read with CO-RE), sock_state.h (what is kept per socket), parse.h
// (packet headers), tcp_check.h (whether TCP takes a FIN or RST), dns.h
// (DNS copies), owner.h (which process owns a socket), claim.h (the
// once-only end record), cgroup.h (new cgroups), stats.h (counters).
// netflow.h (the records) is shared with Go, ring.h (reader wake-ups) with
// bench.c.

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "netflow.h"
#include "kernel.h"
#include "sock_state.h"
#include "parse.h"
#include "tcp_check.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define PASS 1

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

// The collector's own process id as the kernel counts it (in the initial
// PID namespace), whose sockets yield nothing (exclude_self); 0 keeps them.
volatile const __u32 self_tgid = 0;

// Written by netflow_whoami and netflow_netns_probe: the process id of the
// task that runs it, and the network namespace that DNS records read from a
// socket (0 where the kernel cannot tell: no bpf_cast_to_kern_ctx, before
// Linux 6.3).
__u32 whoami_tgid = 0;
__u32 whoami_netns = 0;

// Set by the loader from its probes of the kernel (features.go): a helper
// the kernel lacks is called only behind one of these, so the verifier,
// which checks the helpers of reachable code only, never sees it.
//
// owner_exe: how set_owner reads the executable's name (owner.h).
volatile const __u32 owner_exe = 1;
// mptcp_owner: 1 where cgroup_skb has bpf_skc_to_mptcp_sock (Linux 5.19),
// with which MPTCP subflows take their MPTCP socket's owner.
volatile const __u32 mptcp_owner = 1;

// Sockets that the send and receive tracepoints (the fallback for the owner
// of accepted sockets) have nothing more to do for: their owner is known,
// or they were not accepted. A slot, chosen by the socket's hash, holds the
// address of its socket; netflow_state clears it when the socket closes,
// before the kernel can free it and give its address to a new socket. A
// socket whose slot another took is looked up again. Used where
// settled_cache is set: the fallback runs, and netflow_state with it.
#define SETTLED_SLOTS 4096

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SETTLED_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} settled_socks SEC(".maps");

volatile const __u32 settled_cache = 0;

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

// The kernel's buffer for a new cgroup's path (TRACE_CGROUP_PATH_LEN in
// kernel/cgroup/cgroup-internal.h): the tracepoint gives at most 1023 bytes.
#define TRACE_CGROUP_PATH_LEN 1024

// A path that does not fit in a record is measured here (cgroup.h).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[TRACE_CGROUP_PATH_LEN]);
} cgroup_path_scratch SEC(".maps");

// Force these types into BTF so that bpf2go generates their Go twins.
const struct event *unused_event __attribute__((unused));
const struct dns_event *unused_dns_event __attribute__((unused));
const struct cgroup_event *unused_cgroup_event __attribute__((unused));
const enum family *unused_family __attribute__((unused));
const enum direction *unused_direction __attribute__((unused));
const enum end_by *unused_end_by __attribute__((unused));
const enum end_reason *unused_end_reason __attribute__((unused));
const enum event_flags *unused_event_flags __attribute__((unused));
const enum stat *unused_stat __attribute__((unused));
const enum record_type *unused_record_type __attribute__((unused));
const struct tls_event *unused_tls_event __attribute__((unused));

// These use the maps and constants above.
#include "stats.h"
#include "owner.h"
#include "dns.h"
#include "claim.h"
#include "cgroup.h"
#include "tls.h"

// handle is the body of the two cgroup_skb programs below, for every packet
// a socket of the cgroup sends or receives.
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
	// The first bytes of connections that start like TLS (tls.h); a
	// SYN's are looked at where it starts the connection, below.
	if (seg.payload_len && !(seg.flags & (TH_SYN | TH_RST)))
		tls_segment(skb, &seg, egress);

	// Fast path: data, pure ACKs and SYN-ACKs need no state at all.
	if (!tcp_flags_matter(seg.flags))
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
				flags_restart(st, SOCK_FROM_LISTENER, SOCK_IGNORE);
				// An MPTCP listener's TCP listener is the kernel's:
				// take the owner of the MPTCP socket.
				if (!st->pid)
					copy_owner(st, sk, 0);
				if ((seg.flags & TH_SYN) && !(st->flags & SOCK_IGNORE))
					tls_start(skb, &seg, egress);
			}
		}
		return PASS;
	}

	if (seg.flags & (TH_FIN | TH_RST)) {
		// A socket whose end is written (or the collector's own) takes no
		// more: its second FIN, a FIN's retransmission, the RST after a
		// FIN; claim() would refuse them. Told here, before TCP's rules
		// are checked against its state.
		struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
		if (st && (st->flags & (SOCK_ENDED | SOCK_IGNORE)))
			return PASS;
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
			flags_restart(st, SOCK_OUTGOING, SOCK_IGNORE);
			if (!st->pid)
				copy_owner(st, sk, 1);
			if (!(st->flags & SOCK_IGNORE))
				tls_start(skb, &seg, egress);
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
	forget_settled(sk);
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
	e->netns = netns_of_sock(sk);
	e->cookie = bpf_get_socket_cookie(sk);
	e->cgroup_id = sk->sk_cgrp_data.cgroup->kn->id;
	// inet_sport, not skc_num: on the way to CLOSE the kernel releases
	// the local port (skc_num = 0) before this tracepoint.
	__u16 lport = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport),
	      rport = bpf_ntohs(skc->skc_dport);
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

// Never attached: the loader runs these two once each with
// BPF_PROG_TEST_RUN. It runs a raw tracepoint program in the calling task
// (Linux 5.10), which tells the collector its own process id as the kernel
// counts it: a collector in a PID namespace of its own knows only its
// namespaced one, which never matches what the other programs see. It runs
// a cgroup_skb program on a dummy socket of the calling task's network
// namespace, which tells whether DNS records can carry a socket's network
// namespace.
SEC("raw_tp")
int netflow_whoami(void *ctx)
{
	whoami_tgid = bpf_get_current_pid_tgid() >> 32;
	return 0;
}

SEC("cgroup_skb/egress")
int netflow_netns_probe(struct __sk_buff *skb)
{
	whoami_netns = netns_of(skb);
	return PASS;
}

// A socket created by a process in the cgroup: remember the process. Sockets
// accepted from a listener inherit its state, so they name the process that
// created the listener. An observer: 1 lets every socket be created.
SEC("cgroup/sock_create")
int netflow_sock_create(struct bpf_sock *sk)
{
	if (sk->protocol != IPPROTO_TCP && sk->protocol != IPPROTO_MPTCP &&
	    sk->protocol != IPPROTO_UDP)
		return 1;
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0,
						   BPF_SK_STORAGE_GET_F_CREATE);
	if (st)
		set_owner(st);
	return 1;
}

// The owner of an accepted socket: the process that accepts it
// (confirm_owner), at the exit of inet_csk_accept, which returns the
// accepted sock: a TCP listener's (through inet_accept) and an MPTCP
// listener's (through mptcp_accept: a plain TCP socket for a client without
// MPTCP, else the connection's first subflow). Its arguments changed in
// Linux 6.10 (struct proto_accept_arg), which moves the return value in the
// context: CO-RE tells which kernel this is, and the verifier never walks
// the other read. The loader prefers this program; a kernel that does not
// allow trampolines (fexit) gets the two tracepoints below instead.
struct proto_accept_arg {
	int flags;
} __attribute__((preserve_access_index));

SEC("fexit/inet_csk_accept")
int netflow_accept(unsigned long long *ctx)
{
	// Two loads at fixed offsets: the verifier takes no computed offset
	// into the context, which the compiler would make of one.
	__u64 ret;
	if (bpf_core_type_exists(struct proto_accept_arg)) {
		ret = ctx[2]; // (sk, arg), then the return value
		barrier_var(ret);
	} else {
		ret = ctx[4]; // (sk, flags, err, kern)
		barrier_var(ret);
	}
	struct sock *sk = (struct sock *)ret;
	if (sk)
		confirm_owner(sk);
	return 0;
}

// Where there is no fexit: the process that first sends or reads on it.
SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(netflow_send, struct sock *sk)
{
	confirm_owner_io(sk);
	return 0;
}

SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(netflow_recv, struct sock *sk)
{
	confirm_owner_io(sk);
	return 0;
}

// A new cgroup (of any hierarchy: cgroup.h keeps those of cgroup v2): its
// id and path, for user space's map from ids to paths. Optional: a kernel
// without it leaves user space its walks of the cgroup tree.
SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(netflow_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	emit_cgroup(cgrp, path);
	return 0;
}
