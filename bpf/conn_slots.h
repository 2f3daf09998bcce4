// Where a connecting socket's state (sock_state.h) lives: an entry of the
// preallocated conn_slots table (maps.h), taken at its SYN, rather than
// socket storage, whose allocation at the SYN (two slab objects, charged to
// the memory cgroup, linked with interrupts off) was a third of the egress
// program's time per connection (docs/performance.md). An entry is found by
// the low bits of the socket's cookie and tagged with the cookie.
//
// Each socket's state is in one place: readers look in storage first (one
// load where the socket has none), then in the table. A socket whose entry
// another holds takes storage, as do accepted sockets (their state is a
// clone of their listener's storage) and sockets with storage from their
// creation (sock_create).
//
// An entry is freed when its holder moves to CLOSE (netflow_state), after
// the end record, where the socket can send nothing more: the move was not
// made by a task holding the socket (a softirq or a timer: the ACK of its
// FIN, the peer's FIN in FIN_WAIT2, a RST, a timeout), or the socket is an
// orphan (its file is closed). TCP discards whatever reaches a socket in
// CLOSE, and so does accepted_by_tcp (tcp_check.h). A RST leaves after the
// move only in an abortive close, by tcp_close() or tcp_disconnect() in a
// task that holds the socket and may stall before it sends the RST: that
// entry is kept, and taken over only CONN_SLOT_GRACE_NS after the move, so
// that the RST still finds its socket's ended state. An orphan's RSTs (a
// FIN_WAIT2 socket with TCP_LINGER2 below 0, too many orphans) leave right
// after the move with bottom halves off: only a SYN on another CPU taking
// the freed entry in those microseconds could make such a RST find no
// state and write a second record; so could the RST of a kept entry whose
// task stalled longer than the grace. A socket that connects again after
// it closed takes its own entry back as others take one (compare-and-swap
// of the close time), or takes storage if that fails.
// Without netflow_state (the variable state_tracepoint) no entry is taken,
// since none would be freed; without atomics there is no table at all.

#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "kernel.h"
#include "maps.h"
#include "sock_state.h"

#define CONN_SLOT_GRACE_NS 1000000000ULL // 1 s
// The close time of a freed entry: long past, so the entry is taken at once.
#define CONN_SLOT_FREED 1ULL

#ifndef NETFLOW_NO_ATOMICS

// conn_slot_at returns the entry for a cookie: its low bits, not a hash.
// The kernel numbers sockets' cookies in sequence, so one CPU's connecting
// sockets take neighbouring entries, which its prefetchers bring into the
// cache ahead, where a hash sent each SYN to a cold line of its own (the
// egress program 5-9% cheaper per connection; docs/performance.md). Sockets
// connecting at the same time take distinct entries until 2^CONN_SLOT_BITS
// cookies lie between them.
static __always_inline struct conn_slot *conn_slot_at(__u64 cookie)
{
	__u32 i = cookie & ((1U << CONN_SLOT_BITS) - 1);
	return bpf_map_lookup_elem(&conn_slots, &i);
}

// conn_slot_state returns the state that the socket with this cookie keeps
// in the table, or NULL.
static __always_inline struct sock_state *conn_slot_state(__u64 cookie)
{
	struct conn_slot *s = conn_slot_at(cookie);
	if (!s || s->cookie != cookie)
		return 0;
	return &s->st;
}

// conn_slot_take takes s, the entry for cookie, for a connecting socket
// that has no state yet: if it is free, or if its holder closed long enough
// ago. It returns the entry's state, zeroed, or NULL. Two SYNs may race for
// an entry: for a free one the tag's compare-and-swap decides, for a closed
// holder's the swap of its close time to 0 (which also keeps any other
// taker away while the tag changes).
static __always_inline struct sock_state *conn_slot_take(struct conn_slot *s, __u64 cookie)
{
	__u64 holder = s->cookie;
	if (!holder) {
		if (__sync_val_compare_and_swap(&s->cookie, 0, cookie) != 0)
			return 0;
	} else {
		__u64 closed = s->st.closed_ns;
		if (!closed || bpf_ktime_get_ns() - closed < CONN_SLOT_GRACE_NS)
			return 0;
		if (__sync_val_compare_and_swap(&s->st.closed_ns, closed, 0) != closed)
			return 0;
		s->cookie = cookie;
	}
	__builtin_memset(&s->st, 0, sizeof(s->st));
	return &s->st;
}

#endif

// skb_sock_state returns the state of the packet's socket sk: its storage,
// else its entry in the table; NULL if it has neither.
static __always_inline struct sock_state *skb_sock_state(struct __sk_buff *skb, struct bpf_sock *sk)
{
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
#ifndef NETFLOW_NO_ATOMICS
	if (!st && state_tracepoint)
		st = conn_slot_state(bpf_get_socket_cookie(skb));
#endif
	return st;
}

// connecting_state returns the state for a connecting socket's SYN: the one
// it has (a retransmission, a new connect()), else a table entry, else new
// storage; NULL if none can be had.
static __always_inline struct sock_state *connecting_state(struct __sk_buff *skb,
							   struct bpf_sock *sk)
{
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (st)
		return st;
#ifndef NETFLOW_NO_ATOMICS
	if (state_tracepoint) {
		__u64 cookie = bpf_get_socket_cookie(skb);
		struct conn_slot *s = conn_slot_at(cookie);
		if (s && s->cookie == cookie) {
			// Its own: open (a retransmitted SYN), or closed and
			// connecting again, which another SYN may be taking.
			__u64 closed = s->st.closed_ns;
			if (!closed ||
			    __sync_val_compare_and_swap(&s->st.closed_ns, closed, 0) == closed)
				return &s->st;
		} else if (s && (st = conn_slot_take(s, cookie))) {
			return st;
		}
	}
#endif
	return bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
}

// closing_state returns the state of a socket that moves to CLOSE
// (netflow_state); NULL if the socket has no state (it is not watched).
// *in_table says where the state is.
static __always_inline struct sock_state *closing_state(struct sock *sk, int *in_table)
{
	struct sock_state *st = 0;
	*in_table = 0;
	if (sk->sk_bpf_storage)
		st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
#ifndef NETFLOW_NO_ATOMICS
	if (!st && state_tracepoint) {
		// The cookie as it is, not bpf_get_socket_cookie, which makes
		// one: a socket without one never sent a SYN past the egress
		// program, and the sockets of other cgroups need none.
		__u64 cookie = sk->__sk_common.skc_cookie.counter;
		if (cookie)
			st = conn_slot_state(cookie);
		*in_table = st != 0;
	}
#endif
	return st;
}

// conn_slot_freeable says whether the table entry of a socket that moves to
// CLOSE can be freed after its end record, since no segment of it can follow
// (see the top): the move was not made by a task holding the socket, or the
// socket is an orphan. Otherwise the entry keeps the time of the move, and
// is taken over only after the grace.
static __always_inline int conn_slot_freeable(struct sock *sk)
{
	return !sk->sk_lock.owned || !sk->sk_socket;
}
