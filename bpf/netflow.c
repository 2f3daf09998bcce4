//go:build ignore

// Kernel side of netflowtcpend. Two cgroup_skb programs watch the TCP
// segments of every socket in a cgroup and write one record into a ring
// buffer when a socket's connection ends (its first accepted FIN or RST);
// they also copy the DNS messages the sockets send to and receive from port
// 53, from which user space builds its cache of names. The egress program
// names the process that connects a socket; a cgroup/sock_create program
// remembers the MPTCP sockets' (whose subflows the kernel makes) and marks
// the collector's own; a program at the accept (or tracepoints on TCP sends
// and reads) names the process that owns an accepted socket; a tracepoint
// on socket state changes starts accepted sockets and reports the ends that
// no FIN or RST marks; one on cgroup creation reports each new cgroup's
// path.
//
// The cgroup programs are observers: they return 1 (let the packet through,
// let the socket be created) on every path. Returning 0 would drop the
// packet for every socket in the cgroup.
//
// This file holds the programs. The maps and load-time constants are in
// maps.h, which every header that uses one includes. What the programs do
// is in headers, one concern each: kernel.h (the kernel's types, read with
// CO-RE), sock_state.h (what is kept per socket), conn_slots.h (where a
// connecting socket keeps it), parse.h
// (packet headers), tcp_check.h (whether TCP takes a FIN or RST), dns.h
// (DNS copies), owner.h (which process owns a socket), start.h (where a
// socket's state starts), claim.h (the once-only end record), cgroup.h (new
// cgroups), stats.h (counters).
// netflow.h (the records) is shared with Go, ring.h (reader wake-ups) with
// the test filler (internal/testutils/bpftest).

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
#include "maps.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define PASS 1

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

#include "stats.h"
#include "owner.h"
#include "start.h"
#include "conn_slots.h"
#include "dns.h"
#include "claim.h"
#include "cgroup.h"
#include "tls.h"

// handle is the body of the two cgroup_skb programs below, for every packet
// a socket of the cgroup sends or receives.
static __always_inline int handle(struct __sk_buff *skb, int egress)
{
	switch (fast_path(skb, egress)) {
	case FAST_PASS:
		return PASS;
	case FAST_TLS:
		tls_tail_call(skb, egress);
		return PASS;
	default:
		break;
	}
	struct segment seg;
	if (!parse_segment(skb, &seg))
		return PASS;

	// DNS: queries the socket sends, answers it receives.
	int dns = (egress ? seg.dport : seg.sport) == 53;
	if (dns && !ignored(skb))
		emit_dns(skb, &seg, egress);
	if (seg.proto != IPPROTO_TCP)
		return PASS;

	// Fast path: data, pure ACKs and SYN-ACKs need no state at all; but
	// data may be the first bytes of a connection that starts like TLS
	// (tls.h; a SYN's are looked at where it starts the connection,
	// below). Looked at last, before the return: a branch here that the
	// rest of the program followed would double what the verifier walks,
	// and a tail call does not come back.
	if (!tcp_flags_matter(seg.flags)) {
		tls_segment(skb, &seg, egress);
		return PASS;
	}

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
				listener_syn(skb, sk, st);
				if ((seg.flags & TH_SYN) && !(st->flags & SOCK_IGNORE) &&
				    tls_start(skb, &seg, egress))
					tls_tail_call(skb, egress); // last: it does not come back
			}
		}
		return PASS;
	}

	if (seg.flags & (TH_FIN | TH_RST)) {
		// A socket whose end is written (or the collector's own) takes no
		// more: its second FIN, a FIN's retransmission, the RST after a
		// FIN; claim() would refuse them. Told here, before TCP's rules
		// are checked against its state.
		struct sock_state *st = skb_sock_state(skb, sk);
		if (st && (st->flags & (SOCK_ENDED | SOCK_IGNORE)))
			return PASS;
		if (!st && !egress && sent_fin_unseen(sk))
			return PASS;
		if (egress || accepted_by_tcp(sk, &seg))
			emit_end(skb, sk, st, &seg, egress);
		return PASS;
	}

	// A SYN without ACK leaving a socket: it is connecting.
	if (egress && !(seg.flags & TH_ACK)) {
		struct sock_state *st = connecting_state(skb, sk);
		if (!st)
			return PASS;
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
		// Before the TLS program's tail call, which does not come back.
		note_translation(sk, tp, &seg);
		if (!(st->flags & SOCK_OUTGOING) || (st->flags & SOCK_ENDED)) {
			// New connection, or a new connect() on a socket whose
			// previous attempt ended: start over.
			connecting_syn(skb, sk, st, tp);
			// Data in the SYN (Fast Open): the TLS program's, last.
			if (!(st->flags & SOCK_IGNORE) && tls_start(skb, &seg, egress))
				tls_tail_call(skb, egress);
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

// close_end writes the end of a connection that ends without a FIN or RST
// of its own (netflow_state below) as the socket moves to CLOSE, if none was
// written: a connect or retransmission or keepalive timeout, an ICMP error,
// a connect the application gave up on. It also writes the end of an
// abortive close, whose RST the kernel sends after the move to CLOSE, and
// of a RST that TCP took although the ingress program judged it out of
// window (a backlog it could not see).
static __always_inline void close_end(struct sock *sk, struct sock_state *st, int oldstate)
{
	int err = sk->sk_err;
	// A socket made from its listener and closed before its handshake
	// was over, without an error, is either not a connection or ends with
	// a RST that the egress program sees. When the handshake's last ACK
	// and the first data are taken on two CPUs at once, each makes a
	// socket from the request; the kernel destroys the one that loses (its
	// insert into the established table fails), which never sent or took
	// a segment: the other is the connection. A socket reset in SYN_RECV
	// (a Fast Open socket closed abortively, one still queued when its
	// listener closes) sends its RST after this move to CLOSE.
	if (err == 0 && oldstate == TCP_SYN_RECV)
		return;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;

	__u8 reason = END_CLOSED, by = END_BY_LOCAL;
	if (err == 0 && oldstate == TCP_ESTABLISHED) {
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
	struct event *e = claim(st, &old, reason, by, st->closed_ns);
	if (!e)
		return;

	struct sock_common *skc = &sk->__sk_common;
	e->error = err;
	e->state = oldstate;
	e->cookie = bpf_get_socket_cookie(sk);
	if (!e->cgroup_id) { // not kept in the socket's state
		e->netns = netns_of_sock(sk);
		e->cgroup_id = sk->sk_cgrp_data.cgroup->kn->id;
	}
	// The family of the wire: IPv4 also for a dual-stack socket's IPv4
	// connection (an IPv4-mapped peer), whose IPv4 addresses are in
	// skc_rcv_saddr and skc_daddr.
	e->family = FAMILY_IPV4;
	if (skc->skc_family != AF_INET) {
		__u32 w[4];
		__builtin_memcpy(w, &skc->skc_v6_daddr, 16);
		if (w[0] || w[1] || w[2] != bpf_htonl(0xffff))
			e->family = FAMILY_IPV6;
	}
	struct conn_view own;
	socket_view(tp, e->family, &own);
	set_addresses(e, &own, known_translation(sk, old, &own));
	fill_counters(e, tp, 0, 1);
	submit(e);
}

// The start of an accepted socket: the kernel makes it from its listener
// (LISTEN to SYN_RECV), cloning the listener's state (start.h). The end of
// a socket that TCP moves to CLOSE (close_end), and a connecting socket's
// table entry freed, or kept with the time of the move (conn_slots.h).
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(netflow_state, struct sock *sk, int oldstate, int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_SYN_RECV && oldstate == TCP_LISTEN) {
		accepted_made(sk);
		return 0;
	}
	if (newstate != TCP_CLOSE || oldstate == TCP_LISTEN)
		return 0;
	if (settled_cache)
		forget_settled(sk);
	int in_table;
	struct sock_state *st = closing_state(sk, &in_table);
	if (!st)
		return 0;
	int freeable = in_table && conn_slot_freeable(sk);
	// The time of the move only where it is read: as the end's time, and
	// for an entry kept, as the start of its grace. Most connections have
	// ended (a FIN or RST) and free their entry or keep storage: they need
	// none, and the clock was a quarter of this program's time.
	if (!(st->flags & SOCK_ENDED)) {
		st->closed_ns = bpf_ktime_get_ns();
		close_end(sk, st, oldstate);
	} else if (in_table && !freeable) {
		st->closed_ns = bpf_ktime_get_ns();
	}
	// After the record, which reads the state.
	if (freeable)
		st->closed_ns = CONN_SLOT_FREED;
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
	whoami.tgid = bpf_get_current_pid_tgid() >> 32;
	return 0;
}

SEC("cgroup_skb/egress")
int netflow_netns_probe(struct __sk_buff *skb)
{
	whoami.netns = netns_of(skb);
	return PASS;
}

// A socket created by a process in the cgroup: remember the process, for
// the sockets that need it from their creation: an MPTCP socket, whose TCP
// subflows the kernel makes without a process (copy_owner), and the
// collector's own (exclude_self: marked, DNS included). Other sockets get
// state when they connect or are accepted (start.h), except where cgroup_skb
// programs cannot read the current task (owner_at_connect 0): then every
// TCP and UDP socket's creator is remembered here. An observer: 1 lets
// every socket be created.
SEC("cgroup/sock_create")
int netflow_sock_create(struct bpf_sock *sk)
{
	if (sk->protocol != IPPROTO_TCP && sk->protocol != IPPROTO_MPTCP &&
	    sk->protocol != IPPROTO_UDP)
		return 1;
	if (owner_at_connect && sk->protocol != IPPROTO_MPTCP &&
	    (!self_tgid || (__u32)(bpf_get_current_pid_tgid() >> 32) != self_tgid))
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
