// The slots that tell which segments carry the first bytes of a
// connection (tls.h explains), and the fast path's test of them, which
// parse.h's nothing_to_do uses.

#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "netflow.h"

// Most bytes of a connection's start that are copied: the largest
// tls_hello_limit. A power of two, for the verifier. Browsers' ClientHellos
// with post-quantum key shares are about 1,800 bytes, with a resumption
// ticket and ECH about 2,500.
#define TLS_HELLO_MAX 8192

// Set by the loader; 0 turns TLS off (the verifier then drops this code,
// since a frozen constant is known to it).
volatile const __u32 tls_hello_limit = TLS_HELLO_MAX;

// Slots: a power of two. 2^15 slots of 16 bytes: 512 KiB.
#define TLS_SLOT_BITS 15

struct tls_slot {
	__u32 base;    // sequence number of the stream's first byte
	__u32 limit;   // bytes wanted from base; 0: none
	__u32 started; // 1: the first segment was seen and starts like a ClientHello
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << TLS_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct tls_slot);
} tls_slots SEC(".maps");

// tls_slot_of returns the slot of a connection side, from its addresses'
// last 32 bits (as on the wire), its ports (as on the wire, source in the
// low half) and the side: egress for the bytes a socket sends. The hash is
// Fibonacci hashing of a mix that is not symmetric in source and
// destination.
static __always_inline struct tls_slot *tls_slot_of(__u32 saddr, __u32 daddr, __u32 ports, int egress)
{
	__u32 h = (saddr * 0x9e3779b1) ^ (daddr * 0x85ebca77) ^ ports;
	__u32 key = ((h * 0x9e3779b1) >> (32 - TLS_SLOT_BITS)) ^ (egress ? 1 : 0);
	return bpf_map_lookup_elem(&tls_slots, &key);
}

// tls_wanted is the fast path's test (nothing_to_do), from the headers in
// place: whether a TCP segment whose flags do not matter carries bytes that
// its slot wants. ip is the IP header (IPv4 without options, or IPv6
// without extension headers), th the TCP header, of which 14 bytes are in
// the linear area.
static __always_inline int tls_wanted(struct __sk_buff *skb, __u8 *ip, __u8 *th, int v6, int egress)
{
	if (!tls_hello_limit)
		return 0;
	__u32 l4off = v6 ? 40 : 20;
	if (skb->len <= l4off + (th[12] >> 4) * 4)
		return 0; // no payload: a pure ACK
	__u32 saddr = v6 ? *(__u32 *)(ip + 20) : *(__u32 *)(ip + 12);
	__u32 daddr = v6 ? *(__u32 *)(ip + 36) : *(__u32 *)(ip + 16);
	struct tls_slot *s = tls_slot_of(saddr, daddr, *(__u32 *)th, egress);
	if (!s)
		return 0;
	return bpf_ntohl(*(__u32 *)(th + 4)) - s->base < s->limit;
}

