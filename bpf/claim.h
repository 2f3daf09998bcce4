// Writing a connection's end record: the once-only claim that keeps ingress,
// egress and the state tracepoint from writing two ends for one socket, the
// retry of an end that did not fit in the ring buffer, the counters, the
// addresses (the socket's own, and what this host's NAT made of them), and
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
		e->netns = st->netns; // 0 (cgroup_id too) if not kept: read at the end
		e->cgroup_id = st->cgroup_id;
		e->direction = direction_of(*old);
		// An accepted socket inherits its listener's owner, who need not
		// be the process that accepted it (pre-forked servers): only the
		// process seen accepting it, or sending or reading on it, counts.
		if (!(*old & SOCK_FROM_LISTENER) || (*old & SOCK_OWNER_CONFIRMED)) {
			e->pid = st->pid;
			copy_exe(e->exe, st->exe);
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

// socket_view reads the socket's own view (getsockname, getpeername), which
// no NAT on this host changes, in the family of the wire: a dual-stack
// socket's IPv4 connection has its IPv4 addresses in skc_rcv_saddr and
// skc_daddr. inet_sport, not skc_num: an abortive close releases the local
// port (skc_num = 0) before its RST leaves.
static __always_inline void socket_view(struct tcp_sock *tp, __u8 family, struct conn_view *v)
{
	struct sock_common *skc = &tp->inet_conn.icsk_inet.sk.__sk_common;
	__builtin_memset(v, 0, sizeof(*v));
	if (family == FAMILY_IPV4) {
		v->local[0] = skc->skc_rcv_saddr;
		v->peer[0] = skc->skc_daddr;
	} else {
		__builtin_memcpy(v->local, &skc->skc_v6_rcv_saddr, 16);
		__builtin_memcpy(v->peer, &skc->skc_v6_daddr, 16);
	}
	v->lport = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport);
	v->pport = bpf_ntohs(skc->skc_dport);
}

// packet_view is the segment's addresses from the local socket's side. An
// egress packet has passed netfilter's POSTROUTING: it shows this host's
// translation (a DNAT'd destination, a SNAT'd source). An ingress one has
// been translated back: it shows the socket's own view.
static __always_inline void packet_view(struct segment *seg, int egress, struct conn_view *v)
{
	__builtin_memset(v, 0, sizeof(*v));
	if (egress) {
		__builtin_memcpy(v->local, seg->saddr, 16);
		__builtin_memcpy(v->peer, seg->daddr, 16);
		v->lport = seg->sport;
		v->pport = seg->dport;
	} else {
		__builtin_memcpy(v->local, seg->daddr, 16);
		__builtin_memcpy(v->peer, seg->saddr, 16);
		v->lport = seg->dport;
		v->pport = seg->sport;
	}
}

static __always_inline int same_view(struct conn_view *a, struct conn_view *b)
{
	__u32 diff = (a->lport ^ b->lport) | (a->pport ^ b->pport);
#pragma unroll
	for (int i = 0; i < 4; i++)
		diff |= (a->local[i] ^ b->local[i]) | (a->peer[i] ^ b->peer[i]);
	return diff == 0;
}

// note_translation keeps what a connecting socket's SYN shows of this
// host's NAT, for an end that comes in before the socket sends another
// segment the programs look at. Storage is made only for a translated
// connection (or one of a socket translated before: a new connect()
// overwrites it); its end finds none otherwise, and knows from
// SOCK_OUTGOING that nothing was translated.
static __always_inline void note_translation(struct bpf_sock *sk, struct tcp_sock *tp,
					     struct segment *seg)
{
	if (!tp)
		return;
	struct conn_view own, wire;
	socket_view(tp, seg->family, &own);
	packet_view(seg, 1, &wire);
	struct conn_view *x = bpf_sk_storage_get(&translations, sk, 0, 0);
	if (!x && same_view(&own, &wire))
		return;
	if (!x)
		x = bpf_sk_storage_get(&translations, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (x)
		*x = wire;
}

// set_addresses writes the socket's own view into e, source the side that
// sent the end, and, where it is known (xlat), the view past this host's
// NAT.
static __always_inline void set_addresses(struct event *e, struct conn_view *own,
					  struct conn_view *xlat)
{
	if (e->end_by == END_BY_LOCAL) {
		__builtin_memcpy(e->saddr, own->local, 16);
		__builtin_memcpy(e->daddr, own->peer, 16);
		e->sport = own->lport;
		e->dport = own->pport;
	} else {
		__builtin_memcpy(e->saddr, own->peer, 16);
		__builtin_memcpy(e->daddr, own->local, 16);
		e->sport = own->pport;
		e->dport = own->lport;
	}
	if (!xlat)
		return;
	e->flags |= EVENT_F_XLAT;
	__builtin_memcpy(e->xlat_local, xlat->local, 16);
	__builtin_memcpy(e->xlat_peer, xlat->peer, 16);
	e->xlat_lport = xlat->lport;
	e->xlat_pport = xlat->pport;
}

// known_translation returns what is known of sk's translation without a
// packet that shows it: what its SYN showed (note_translation), or its own
// view when its SYN showed none; NULL when the programs never saw it send
// a SYN (an accepted socket, one open before start).
static __always_inline struct conn_view *known_translation(void *sk, __u32 old,
							   struct conn_view *own)
{
	struct conn_view *x = bpf_sk_storage_get(&translations, sk, 0, 0);
	if (x)
		return x;
	return (old & SOCK_OUTGOING) ? own : 0;
}

// sent_fin_unseen says whether a socket that has no state, to which a FIN or
// RST comes, is in a state TCP reaches only once the socket has sent its
// FIN. The egress program would have made its state had it seen that FIN:
// the socket was open before the programs and its connection ended then
// (its process closed it, or shut down writing), and what it receives now
// is not its end. A socket that shut down writing stays a full socket, and
// so, at times, does a closed one (it usually becomes a timewait socket,
// which the programs cannot read).
static __always_inline int sent_fin_unseen(struct bpf_sock *sk)
{
	__u32 state = sk->state;
	return state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_CLOSING ||
	       state == TCP_TIME_WAIT || state == TCP_LAST_ACK;
}

// emit_end writes the end of sk's connection that seg, a FIN or RST it
// sends (egress) or TCP takes, marks; st is its state (conn_slots.h), NULL
// if it has none yet (a socket open before the programs were): storage is
// made for it then, for the once-only guard.
static __always_inline void emit_end(struct __sk_buff *skb, struct bpf_sock *sk,
				     struct sock_state *st, struct segment *seg, int egress)
{
	if (!st)
		st = bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
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

	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!e->cgroup_id) {
		// Not kept in the socket's state (start.h): the TCP socket's
		// namespace, which bpf_skc_to_tcp_sock reaches on every kernel;
		// BPF_PROG_TEST_RUN's dummy socket has no TCP state.
		e->netns = tp ? netns_of_sock(&tp->inet_conn.icsk_inet.sk) : netns_of(skb);
		e->cgroup_id = bpf_skb_cgroup_id(skb);
	}
	e->cookie = bpf_get_socket_cookie(skb);
	e->family = seg->family;
	e->state = sk->state;
	// The addresses are the socket's (the packet's only for the dummy
	// socket, which has none); a segment leaving the socket shows this
	// host's translation, one coming in does not.
	struct conn_view own, wire;
	packet_view(seg, egress, &wire);
	if (tp)
		socket_view(tp, seg->family, &own);
	else
		own = wire;
	set_addresses(e, &own, !tp ? 0 : egress ? &wire : known_translation(sk, old, &own));
	fill_counters(e, tp, seg, egress);
	submit(e);
}
