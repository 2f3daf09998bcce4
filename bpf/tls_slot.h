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

// tls_wanted is the fast path's test (fast_path), from the headers in
// place: whether a TCP segment whose flags do not matter carries bytes that
// its slot wants. th is the TCP header, l4off bytes into the packet, of
// which 14 bytes are in the linear area; saddr and daddr are the last 32
// bits of the addresses.
static __always_inline int tls_wanted(struct __sk_buff *skb, __u8 *th, __u32 l4off, __u32 saddr,
				      __u32 daddr, int egress)
{
	if (!tls_hello_limit)
		return 0;
	if (skb->len <= l4off + (th[12] >> 4) * 4)
		return 0; // no payload: a pure ACK
	struct tls_slot *s = &tls_slots[tls_slot_index(saddr, daddr, *(__u32 *)th, egress)];
	return bpf_ntohl(*(__u32 *)(th + 4)) - s->base < s->limit;
}
