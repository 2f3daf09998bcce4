// Writing a connection's end record: the once-only claim that keeps ingress,
// egress and the state tracepoint from writing two ends for one socket, the
// retry of an end that did not fit in the ring buffer, the counters, and
// the wake-up of the reader.

#pragma once

#include "maps.h"
#include "kernel.h"
#include "owner.h"
#include "parse.h"
#include "ring.h"
#include "sock_state.h"
#include "stats.h"

// fill_counters copies the socket's TCP counters into e. The kernel counts
// an outgoing segment before the egress hook and an incoming one after the
// ingress hook: the terminating segment is added here when it came in.
static __always_inline void fill_counters(struct event *e, struct tcp_sock *tp, struct segment *seg,
					  int egress)
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
static __always_inline struct event *claim(struct sock_state *st, __u32 *old, __u8 reason, __u8 by,
					   __u64 now)
{
	if (!st)
		count(STAT_NO_STORAGE); // no once-only guard: write it anyway
	else if (st->flags & (SOCK_ENDED | SOCK_IGNORE))
		return 0; // retransmitted FIN, second FIN, RST after FIN; or ours

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		if (!st) {
			count(STAT_LOST);
		} else if (!(flags_fetch_or(st, SOCK_LOST) & SOCK_LOST)) {
			st->lost_reason = reason;
			st->lost_by = by;
			st->lost_time_ns = now;
			count(STAT_LOST);
		}
		return 0;
	}
	*old = 0;
	if (st) {
		*old = flags_fetch_or(st, SOCK_ENDED);
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
		// process seen accepting it, or sending or reading on it, counts.
		if (!(*old & SOCK_FROM_LISTENER) || (*old & SOCK_OWNER_CONFIRMED)) {
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
	__u64 pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) -
			((sizeof(*e) + 8 + 7) & ~7ULL);
	bpf_ringbuf_submit(e, wakeup_flag(pending, sizeof(*e), wakeup_shift));
}

static __always_inline void emit_end(struct __sk_buff *skb, struct bpf_sock *sk,
				     struct segment *seg, int egress)
{
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0,
						   BPF_SK_STORAGE_GET_F_CREATE);
	// An MPTCP subflow: its owner is the MPTCP socket's.
	if (st && (!st->pid ||
		   (st->flags & (SOCK_FROM_LISTENER | SOCK_OWNER_CONFIRMED)) == SOCK_FROM_LISTENER))
		copy_owner(st, sk, 1);
	__u32 old;
	__u8 reason = (seg->flags & TH_RST) ? END_RST : END_FIN;
	struct event *e = claim(st, &old, reason, egress ? END_BY_LOCAL : END_BY_REMOTE,
				bpf_ktime_get_ns());
	if (!e)
		return;

	// The TCP socket's namespace, which bpf_skc_to_tcp_sock reaches on
	// every kernel; BPF_PROG_TEST_RUN's dummy socket has no TCP state.
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	e->netns = tp ? netns_of_sock(&tp->inet_conn.icsk_inet.sk) : netns_of(skb);
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
	fill_counters(e, tp, seg, egress);
	submit(e);
}
