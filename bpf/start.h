// Where a socket's state starts: a connecting socket's first SYN, a
// listener's first SYN (its state is what every socket accepted from it
// inherits, by the clone), an accepted socket's creation. Sockets get
// storage here, when they connect or are accepted, not when they are
// created: most sockets a host creates (UDP, listeners, sockets that never
// connect) need none.

#pragma once

#include "maps.h"
#include "kernel.h"
#include "owner.h"
#include "sock_state.h"

// note_where keeps the socket's cgroup and network namespace, which never
// change, for its end record (claim.h). tp is the socket; NULL for
// BPF_PROG_TEST_RUN's dummy socket, whose end reads them.
static __always_inline void note_where(struct sock_state *st, struct __sk_buff *skb,
				       struct tcp_sock *tp)
{
	if (!tp)
		return;
	st->netns = netns_of_sock(&tp->inet_conn.icsk_inet.sk);
	st->cgroup_id = bpf_skb_cgroup_id(skb);
}

// connecting_syn starts the state of a socket whose SYN leaves it: a new
// connection, or a new connect() on a socket whose previous attempt ended.
// tp is the socket.
static __always_inline void connecting_syn(struct __sk_buff *skb, struct bpf_sock *sk,
					   struct sock_state *st, struct tcp_sock *tp)
{
	st->start_ns = bpf_ktime_get_ns();
	flags_restart(st, SOCK_OUTGOING, SOCK_IGNORE);
	if (!st->pid) {
		// An MPTCP subflow: the MPTCP socket's owner; else the process
		// in connect().
		copy_owner(st, sk, 1);
		if (!st->pid && owner_at_connect)
			set_connecting_owner(st, tp);
	}
	note_where(st, skb, tp);
}

// listener_syn keeps on a listener, at a SYN (or the handshake's final
// ACK) it receives, what the sockets accepted from it inherit: that they
// are incoming, the owner of an MPTCP listener (for exclude_self), the
// cgroup and network namespace. Written once per listener, at its first
// SYN, not at every one: both CPUs would write the same cache line for
// every connection. Written again only for a socket that was something else
// before (a connection's state, then connect(AF_UNSPEC) and listen()).
static __always_inline void listener_syn(struct __sk_buff *skb, struct bpf_sock *sk,
					 struct sock_state *st)
{
	if ((st->flags & ~SOCK_IGNORE) != SOCK_FROM_LISTENER) {
		flags_restart(st, SOCK_FROM_LISTENER, SOCK_IGNORE);
		// An MPTCP listener's TCP listener is the kernel's: take the
		// owner of the MPTCP socket.
		if (!st->pid)
			copy_owner(st, sk, 0);
		note_where(st, skb, bpf_skc_to_tcp_sock(sk));
	}
	// Without netflow_state (accepted_made), the start of the socket
	// accepted next is the time of the last SYN.
	if (!state_tracepoint)
		st->start_ns = bpf_ktime_get_ns();
}

// accepted_made starts the state of a socket the kernel makes from its
// listener (netflow_state, at its move from LISTEN to SYN_RECV: when the
// handshake's final ACK arrives, or the SYN of a Fast Open): its start.
// The rest came with the clone of its listener's state, made just before;
// a socket accepted from a listener without state has none.
static __always_inline void accepted_made(struct sock *sk)
{
	if (!sk->sk_bpf_storage)
		return;
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (st && (st->flags & SOCK_FROM_LISTENER))
		st->start_ns = bpf_ktime_get_ns();
}
