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
// sets it to 0. So every other data segment costs the fast path (parse.h)
// one slot load and a comparison, and sockets that never send TLS keep
// nothing: the table is all the memory this takes.
//
// Two connections whose handshakes overlap in one slot: the later takes it,
// the earlier gets no name. A segment of another connection that hashes to
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
// No loops and no atomics, and the slow path is two global functions
// (tls_look, tls_emit), which the verifier checks once each. Only the
// object for Linux 6.4 and later has this code (gen.go, features.go): a
// verifier before 6.4 gives up state pruning in a program that calls a
// function, and the calls made each start several times slower there.

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

// A segment as tls_look takes it: scalars only, which is what a global
// function's arguments may be on every kernel (Linux 5.10 takes no pointer
// but to the context). where: the payload's offset in the packet (bits 0-15)
// and the TCP header's (bits 16-31); what: the slot's index (bits 0-15),
// egress (bit 16), IPv6 (bit 17).
#define TLS_WHAT_EGRESS (1 << 16)
#define TLS_WHAT_V6 (1 << 17)

#ifndef NETFLOW_NO_TLS

// tls_emit copies n bytes (1 to TLS_HELLO_MAX) from the payload of a
// segment (where, what: as tls_look takes them; sizes: n, and limit in the
// upper 16 bits), which are bytes offset on of the stream, into the ring
// buffer, with the connection's addresses and ports read from the packet.
// A global function, verified once, as tls_look.
__noinline int tls_emit(struct __sk_buff *skb, __u32 where, __u32 what, __u32 offset, __u32 sizes)
{
	__u32 payload_off = where & 0xffff, l4off = where >> 16;
	__u32 n = sizes & 0xffff, limit = sizes >> 16;
	// The verifier wants a length it can bound without tracking the
	// caller's.
	n = ((n - 1) & (TLS_HELLO_MAX - 1)) + 1;
	__u32 zero = 0;
	struct tls_scratch *t = bpf_map_lookup_elem(&tls_scratch, &zero);
	if (!t)
		return 0;
	struct tls_event *h = &t->hdr;
	__builtin_memset(h, 0, sizeof(*h));
	__u8 ports[4];
	int err = bpf_skb_load_bytes(skb, payload_off, t->payload, n) |
		  bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports));
	if (what & TLS_WHAT_V6) {
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
		return 0;
	}
	h->type = RECORD_TLS;
	h->egress = (what & TLS_WHAT_EGRESS) ? 1 : 0;
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
	return 0;
}

// tls_look looks at a segment whose payload (payload_len bytes) starts
// offset bytes into the stream that its slot follows: the stream's first
// segment decides whether it is TLS and how much of it to copy; later ones
// are copied up to that. It is a global function, which the verifier
// checks once, on its own, instead of at each call site in each program and
// along every path there: inlined, this code doubled what the verifier
// walks, and each start of the receiver on Linux 5.10 took that much
// longer.
__noinline int tls_look(struct __sk_buff *skb, __u32 where, __u32 what, __u32 payload_len,
			__u32 offset)
{
	struct tls_slot *s = &tls_slots[what & ((1 << TLS_SLOT_BITS) - 1)];
	__u32 payload_off = where & 0xffff;
	__u32 limit = s->limit;
	if (offset >= limit || payload_len == 0)
		return 0;
	if (offset == 0) {
		__u8 h[16] = {};
		__u32 n = payload_len < 9 ? payload_len : 9;
		if (bpf_skb_load_bytes(skb, payload_off, h, ((n - 1) & 15) + 1))
			return 0;
		limit = tls_start_limit(h, n);
		if (!limit) {
			s->limit = 0; // not TLS: the fast path from now on
			return 0;
		}
		s->started = 1;
	} else if (!s->started) {
		return 0; // before the stream's first segment
	}
	__u32 n = limit - offset;
	if (n > payload_len)
		n = payload_len;
	// The last piece wanted: the fast path from now on.
	s->limit = payload_len >= limit - offset ? 0 : limit;
	tls_emit(skb, where, what, offset, n | limit << 16);
	return 0;
}

// tls_call calls tls_look for a parsed segment whose payload starts offset
// bytes into the stream of slot idx.
static __always_inline void tls_call(struct __sk_buff *skb, struct segment *seg, int egress,
				     __u32 idx, __u32 offset)
{
	__u32 l4off = seg->l4off;
	__u32 what = idx | (egress ? TLS_WHAT_EGRESS : 0) |
		     (seg->family == FAMILY_IPV6 ? TLS_WHAT_V6 : 0);
	tls_look(skb, (seg->payload_off & 0xffff) | l4off << 16, what, seg->payload_len, offset);
}

// tls_segment is the slow path's look at a TCP segment with payload that
// is not a SYN: copied if its slot wants it.
static __always_inline void tls_segment(struct __sk_buff *skb, struct segment *seg, int egress)
{
	if (!tls_hello_limit || !seg->payload_len)
		return;
	__u32 idx = tls_slot_index_of_seg(seg, egress);
	struct tls_slot *s = &tls_slots[idx];
	if (seg->seq - s->base < s->limit)
		tls_call(skb, seg, egress, idx, seg->seq - s->base);
}

// tls_start follows a connection that a SYN starts: sent by a connecting
// socket (egress), or arriving at a listener. Data in the SYN (TCP Fast
// Open) is the stream's start; on a listener it is copied with the
// listener's cookie, and user space finds the accepted socket by the
// network namespace, addresses and ports.
static __always_inline void tls_start(struct __sk_buff *skb, struct segment *seg, int egress)
{
	if (!tls_hello_limit)
		return;
	__u32 idx = tls_slot_index_of_seg(seg, egress);
	struct tls_slot *s = &tls_slots[idx];
	s->base = seg->seq + 1; // the SYN takes one sequence number
	s->limit = tls_hello_limit;
	s->started = 0;
	if (seg->payload_len)
		tls_call(skb, seg, egress, idx, 0);
}

#else // NETFLOW_NO_TLS: the object for kernels before 5.12

static __always_inline void tls_segment(struct __sk_buff *skb, struct segment *seg, int egress)
{
}

static __always_inline void tls_start(struct __sk_buff *skb, struct segment *seg, int egress)
{
}

#endif
