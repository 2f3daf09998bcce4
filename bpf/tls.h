// The first bytes of connections that start like a TLS ClientHello, copied
// into the ring buffer, from which user space takes the server name (SNI)
// for the records of both sockets (internal/tlshello). Any port: what is
// looked for is a TLS handshake record, not a port number.
//
// Which segments to look at, without state per socket: a table of slots,
// one per connection side (chosen by a hash of its addresses and ports, and
// whether the segments leave or arrive), holds the sequence number of the
// stream's first byte (base) and how many bytes from there are wanted
// (limit). A connection's SYN sets its slot (on the connecting socket for
// the bytes it sends, on the listener for the bytes the accepted socket
// receives); a segment is wanted when seq - base < limit. The first payload
// segment sets limit to the ClientHello's length when it starts like one
// (at most tls_hello_limit), else to 0; the segment that reaches the limit
// sets it to 0. A byte per slot, tls_armed, says whether its limit is not
// 0; it is set after the slot and cleared with its limit. So every other
// data segment costs the fast path (parse.h) one load from those 32 KiB,
// which stay in the CPU's cache (the slots, read at a hashed index, did
// not: the read cost 11 to 13 ns per data segment sent, under bulk and
// request/response traffic, on a 2-vCPU AMD EPYC guest; docs/performance.md),
// and sockets that never send TLS keep nothing: the two tables are
// all the memory this takes. A slot armed for a connection that never sends
// (a refused connect, a server that speaks first) stays armed until another
// connection takes it: its byte costs only the segments that hash to it.
//
// Two connections whose handshakes overlap in one slot: the later takes it,
// the earlier gets no name; if one ends its look as the other arms the
// slot, on two CPUs at once, the byte may be cleared under the new arming
// and that one gets no name either. A segment of another connection that hashes to
// a wanted slot is looked at only if its sequence number falls within the
// limit (a chance of about limit / 2^32), and copied only if its bytes
// start like a ClientHello. Segments that arrive before the stream's first
// segment (reordered) are not copied: that connection gets no name.
//
// TCP Fast Open: the SYN's data is the stream's start. A listener sees it
// (the accepted socket does not exist yet), so that copy carries the
// listener's cookie and user space ties it to the accepted socket by its
// namespace, addresses and ports; the same for data that completes a
// handshake in place of its ACK.
//
// No loops. The slow path is a program of its own for each direction
// (netflow_tls_ingress, netflow_tls_egress), which the cgroup_skb programs
// reach with a tail call when a segment's slot wants it: the verifier
// checks it once, on its own, and the main programs carry no call to a
// function. Verifiers before Linux 6.4 give up precision tracking in a
// program that calls one, which made the main programs' state space about
// four times larger with the TLS code in global functions (docs/tls.md has
// the numbers); a tail call is a helper call, which they handle. A kernel
// whose verifier still refuses the TLS programs gets the main programs
// without them (loader.go).

#pragma once

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "netflow.h"
#include "kernel.h"
#include "maps.h"
#include "parse.h"
#include "ring.h"
#include "stats.h"
#include "tls_slot.h"

// tls_slot_index_of_seg is the index in tls_slots of a parsed segment's
// slot (tls_slot_of).
static __always_inline __u32 tls_slot_index_of_seg(struct segment *seg, int egress)
{
	int v6 = seg->family == FAMILY_IPV6;
	__u32 ports = (__u32)bpf_htons(seg->sport) | (__u32)bpf_htons(seg->dport) << 16;
	return tls_slot_index(v6 ? seg->saddr[3] : seg->saddr[0],
			      v6 ? seg->daddr[3] : seg->daddr[0], ports, egress);
}

// TLS wire values (RFC 8446 5.1, 4).
#define TLS_RECORD_HANDSHAKE 22
#define TLS_RECORD_MAX (1 << 14)
#define TLS_CLIENT_HELLO 1

// tls_start_limit says from the first n (1 to 9) bytes of a stream whether
// it starts like a ClientHello: a handshake record of version 3.0 to 3.4,
// 1 to 2^14 bytes long, whose message is a ClientHello. It returns how many
// bytes of the stream to copy: the record, or tls_hello_limit when the
// message continues in further records or its length is not among the n
// bytes; 0 for a stream that is not TLS. internal/tlshello reads the same.
static __always_inline __u32 tls_start_limit(const __u8 *h, __u32 n)
{
	if (h[0] != TLS_RECORD_HANDSHAKE)
		return 0;
	if (n >= 2 && h[1] != 3)
		return 0;
	if (n >= 3 && h[2] > 4)
		return 0;
	__u32 limit = tls_hello_limit;
	if (n < 5)
		return limit;
	__u32 reclen = (__u32)h[3] << 8 | h[4];
	if (reclen == 0 || reclen > TLS_RECORD_MAX)
		return 0;
	if (n >= 6 && h[5] != TLS_CLIENT_HELLO)
		return 0;
	if (n >= 9) {
		__u32 msglen = (__u32)h[6] << 16 | (__u32)h[7] << 8 | h[8];
		if (msglen + 4 <= reclen && reclen + 5 < limit)
			limit = reclen + 5;
	}
	return limit;
}

// tls_emit copies n bytes (1 to TLS_HELLO_MAX) of the payload of the
// segment that the control block describes (tls_note), which are bytes
// offset on of the stream, of which limit are wanted, into the ring buffer,
// with the connection's addresses and ports read from the packet.
static __always_inline void tls_emit(struct __sk_buff *skb, __u32 where, __u32 what, int egress,
				     __u32 offset, __u32 n, __u32 limit)
{
	__u32 payload_off = where & 0xffff, l4off = where >> 16;
	// The verifier wants a length it can bound without tracking the
	// caller's.
	n = ((n - 1) & (TLS_HELLO_MAX - 1)) + 1;
	__u32 zero = 0;
	struct tls_scratch *t = bpf_map_lookup_elem(&tls_scratch, &zero);
	if (!t)
		return;
	struct tls_event *h = &t->hdr;
	__builtin_memset(h, 0, sizeof(*h));
	__u8 ports[4];
	int err = bpf_skb_load_bytes(skb, payload_off, t->payload, n) |
		  bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports));
	if (what & TLS_CB_V6) {
		h->family = FAMILY_IPV6;
		err |= bpf_skb_load_bytes(skb, 8, h->saddr, 16) |
		       bpf_skb_load_bytes(skb, 24, h->daddr, 16);
	} else {
		h->family = FAMILY_IPV4;
		err |= bpf_skb_load_bytes(skb, 12, h->saddr, 4) |
		       bpf_skb_load_bytes(skb, 16, h->daddr, 4);
	}
	if (err) {
		count(STAT_TLS_LOST);
		return;
	}
	h->type = RECORD_TLS;
	h->egress = egress;
	// A listener: the data of a SYN (TCP Fast Open), or of a segment that
	// completes the handshake in place of its ACK; the accepted socket is
	// not there yet.
	struct bpf_sock *sk = skb->sk;
	h->listener = sk && sk->state == TCP_LISTEN;
	// The TCP socket's namespace, as end records have it (claim.h).
	struct tcp_sock *tp = sk ? bpf_skc_to_tcp_sock(sk) : 0;
	h->netns = tp ? netns_of_sock(&tp->inet_conn.icsk_inet.sk) : netns_of(skb);
	h->offset = offset;
	h->payload_len = n;
	h->limit = limit;
	h->time_ns = bpf_ktime_get_ns();
	h->cookie = bpf_get_socket_cookie(skb);
	h->sport = (__u16)ports[0] << 8 | ports[1];
	h->dport = (__u16)ports[2] << 8 | ports[3];
	__u64 pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (bpf_ringbuf_output(&events, t, sizeof(*h) + n,
			       wakeup_flag(pending, sizeof(*h) + n, wakeup_shift)))
		count(STAT_TLS_LOST);
}

// tls_look is the TLS program's body: it looks at the TCP segment with
// payload that the control block describes (tls_note), whose slot wants
// it. The stream's first segment decides whether it is TLS and how much of
// it to copy (the fast path has already let through the ones that cannot
// be); later ones are copied up to that.
static __always_inline int tls_look(struct __sk_buff *skb, int egress)
{
	__u32 where = skb->cb[0], what = skb->cb[1], payload_len = skb->cb[2];
	__u32 idx = what & ((1 << TLS_SLOT_BITS) - 1);
	struct tls_slot *s = &tls_slots[idx];
	__u32 offset = skb->cb[3] - s->base;
	__u32 limit = s->limit;
	if (offset >= limit || payload_len == 0)
		return PASS;
	if (offset == 0) {
		__u8 h[16] = {};
		__u32 n = payload_len < 9 ? payload_len : 9;
		if (bpf_skb_load_bytes(skb, where & 0xffff, h, ((n - 1) & 15) + 1))
			return PASS;
		limit = tls_start_limit(h, n);
		if (!limit) {
			s->limit = 0; // not TLS: the fast path from now on
			tls_armed[idx] = 0;
			return PASS;
		}
		s->started = 1;
	} else if (!s->started) {
		return PASS; // before the stream's first segment
	}
	__u32 n = limit - offset;
	if (n > payload_len)
		n = payload_len;
	// The last piece wanted: the fast path from now on.
	if (payload_len >= limit - offset) {
		s->limit = 0;
		tls_armed[idx] = 0;
	} else {
		s->limit = limit; // at the first piece: the ClientHello's length
	}
	tls_emit(skb, where, what, egress, offset, n, limit);
	return PASS;
}

SEC("cgroup_skb/ingress")
int netflow_tls_ingress(struct __sk_buff *skb)
{
	return tls_look(skb, 0);
}

SEC("cgroup_skb/egress")
int netflow_tls_egress(struct __sk_buff *skb)
{
	return tls_look(skb, 1);
}

// The TLS programs, one per direction: a program array takes programs of
// its first caller's attach type only (Linux 6.17 checks it).
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, int(struct __sk_buff *));
} tls_ingress_progs SEC(".maps") = {
	.values = {[0] = (void *)&netflow_tls_ingress},
};

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, int(struct __sk_buff *));
} tls_egress_progs SEC(".maps") = {
	.values = {[0] = (void *)&netflow_tls_egress},
};

// tls_tail_call hands the packet to the TLS program of its direction, which
// returns PASS for it; the caller returns PASS if the program is not there
// (the loader left it out).
static __always_inline void tls_tail_call(struct __sk_buff *skb, int egress)
{
	if (egress)
		bpf_tail_call(skb, &tls_egress_progs, 0);
	else
		bpf_tail_call(skb, &tls_ingress_progs, 0);
}

// tls_segment is the slow path's look at a TCP segment with payload that
// is not a SYN (the fast path, parse.h, tail-calls for the usual ones):
// the TLS program's if its slot wants it. Last on its path: a tail call
// does not come back.
static __always_inline void tls_segment(struct __sk_buff *skb, struct segment *seg, int egress)
{
	if (!tls_hello_limit || !seg->payload_len)
		return;
	__u32 idx = tls_slot_index_of_seg(seg, egress);
	if (!tls_armed[idx])
		return;
	struct tls_slot *s = &tls_slots[idx];
	if (seg->seq - s->base < s->limit) {
		tls_note(skb, seg->payload_off, seg->l4off, idx, seg->family == FAMILY_IPV6,
			 seg->payload_len, seg->seq);
		tls_tail_call(skb, egress);
	}
}

// tls_start follows a connection that a SYN starts: sent by a connecting
// socket (egress), or arriving at a listener. It says whether the SYN has
// data (TCP Fast Open), the stream's start, for which the caller then
// calls tls_tail_call last; on a listener it is copied with the listener's
// cookie, and user space finds the accepted socket by the network
// namespace, addresses and ports.
static __always_inline int tls_start(struct __sk_buff *skb, struct segment *seg, int egress)
{
	if (!tls_hello_limit)
		return 0;
	__u32 idx = tls_slot_index_of_seg(seg, egress);
	struct tls_slot *s = &tls_slots[idx];
	s->base = seg->seq + 1; // the SYN takes one sequence number
	s->limit = tls_hello_limit;
	s->started = 0;
	tls_armed[idx] = 1; // after the slot: a reader that sees 1 finds it set
	if (!seg->payload_len)
		return 0;
	tls_note(skb, seg->payload_off, seg->l4off, idx, seg->family == FAMILY_IPV6,
		 seg->payload_len, seg->seq + 1);
	return 1;
}
