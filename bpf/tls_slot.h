// The slots that tell which segments carry the first bytes of a
// connection (tls.h explains), and the fast path's test of them, which
// parse.h's fast_path uses.

#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "netflow.h"
#include "maps.h"

// tls_slot_index returns the index in tls_slots of a connection side's
// slot, from its addresses' last 32 bits and its ports (as the programs load
// them from the packet: 32-bit words of wire bytes, source port in the low
// half) and the side: egress for the bytes a socket sends. One multiply
// (Fibonacci hashing) of a mix that is not symmetric in source and
// destination: a connection's two directions take different slots.
static __always_inline __u32 tls_slot_index(__u32 saddr, __u32 daddr, __u32 ports, int egress)
{
	__u32 h = (saddr ^ ports ^ (daddr << 16 | daddr >> 16)) * 0x9e3779b1;
	return (h >> (32 - TLS_SLOT_BITS)) ^ (egress ? 1 : 0);
}

// What the TLS program (tls.h) is told of a segment, in the packet's
// control block (skb->cb, which the kernel saves and restores around the
// cgroup programs), so that it parses nothing again: the payload's offset
// in the packet (bits 0-15) and the TCP header's (bits 16-31); the slot's
// index, and whether the packet is IPv6; the payload's length; the
// sequence number of its first byte.
#define TLS_CB_V6 (1 << 31)

static __always_inline void tls_note(struct __sk_buff *skb, __u32 payload_off, __u32 l4off,
				     __u32 idx, int v6, __u32 payload_len, __u32 seq)
{
	skb->cb[0] = (payload_off & 0xffff) | l4off << 16;
	skb->cb[1] = idx | (v6 ? TLS_CB_V6 : 0);
	skb->cb[2] = payload_len;
	skb->cb[3] = seq;
}

// tls_wanted is the fast path's test (fast_path), from the headers in
// place: whether a TCP segment whose flags do not matter carries bytes that
// its slot wants, for the TLS program (tls.h). th is the TCP header, l4off
// bytes into the packet, of which 14 bytes are in the linear area; saddr
// and daddr are the last 32 bits of the addresses.
//
// The stream's first segment goes to the TLS program, which decides from
// its first bytes (tls_start_limit) and turns the slot off if it cannot
// start a ClientHello: they are not in the linear area (cgroup_skb
// programs see TCP's data in page fragments, on loopback and veth alike),
// and a bpf_skb_load_bytes here made the verifier of Linux 6.1 walk 2.6
// times the instructions of the egress program (70,198 against 27,098).
static __always_inline int tls_wanted(struct __sk_buff *skb, __u8 *th, __u32 l4off, __u32 saddr,
				      __u32 daddr, int egress)
{
	if (!tls_hello_limit)
		return 0;
	__u32 payload_off = l4off + (th[12] >> 4) * 4;
	__u32 len = skb->len;
	if (len <= payload_off)
		return 0; // no payload: a pure ACK
	__u32 idx = tls_slot_index(saddr, daddr, *(__u32 *)th, egress);
	if (!tls_armed[idx])
		return 0; // the usual case: no connection of this slot is starting
	struct tls_slot *s = &tls_slots[idx];
	__u32 seq = bpf_ntohl(*(__u32 *)(th + 4));
	__u32 offset = seq - s->base;
	if (offset >= s->limit)
		return 0;
	if (offset && !s->started)
		return 0; // before the stream's first segment
	tls_note(skb, payload_off, l4off, idx, l4off == 40, len - payload_off, seq);
	return 1;
}
