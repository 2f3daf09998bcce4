// Packet parsing for the cgroup_skb programs: the quick test that lets the
// bulk of traffic through without a helper call, and the full parse of the
// IPv4/IPv6 and TCP/UDP headers into a struct segment (from the headers in
// place when they are, else with bpf_skb_load_bytes). Nothing here keeps
// state or writes records.

#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "netflow.h"
#include "tls_slot.h"

// TCP header flags (byte 13 of the header).
#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_ACK 0x10

// How many IPv6 extension headers the parser walks before giving up.
#define MAX_IPV6_EXT 6

// A parsed TCP segment or UDP datagram. Addresses are as on the wire; IPv4
// uses word 0.
struct segment {
	__u32 saddr[4];
	__u32 daddr[4];
	__u32 seq;
	__u32 ack_seq;
	__u32 l4off; // where the transport header starts
	__u32 payload_off;
	__u32 payload_len;
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u8 flags; // TCP only
};

// seq_before is the kernel's before(): serial number arithmetic.
static __always_inline int seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

// tcp_flags_matter says whether a TCP segment with these flags can change
// what the programs keep or write: a FIN or RST (an end), a SYN without ACK
// (a connect, or a connection arriving at a listener). Data, pure ACKs and
// SYN-ACKs change nothing: a SYN-ACK leaves a listener or a socket in a
// simultaneous open, or arrives at a connecting socket (whose state its SYN
// set) or at a listener (which answers it with a RST).
static __always_inline int tcp_flags_matter(__u8 flags)
{
	return (flags & (TH_FIN | TH_RST)) || (flags & (TH_SYN | TH_ACK)) == TH_SYN;
}

// What the fast path (fast_path) decided about a packet.
enum fast_path {
	FAST_PARSE, // the long way: parse it and look
	FAST_PASS,  // nothing to do
	FAST_TLS,   // the first bytes of a connection: the TLS program's (tls.h)
};

// fast_path decides, from the headers in place and without a helper call,
// that a packet is a TCP segment whose flags do not matter
// (tcp_flags_matter) and not DNS: the bulk of traffic, which costs nothing
// more (FAST_PASS), unless it carries the first bytes of a connection that
// may start like TLS (tls_slot.h), which the TLS program looks at
// (FAST_TLS). Anything it cannot tell (IP options, extension headers,
// headers not in the linear area) goes the long way (FAST_PARSE).
static __always_inline enum fast_path fast_path(struct __sk_buff *skb, int egress)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;
	__u8 *th;
	__u32 l4off, saddr, daddr; // the addresses' last 32 bits, for tls_wanted
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (data + 20 + 14 > end)
			return FAST_PARSE;
		// Version 4, no options, TCP, not a fragment.
		if (data[0] != 0x45 || data[9] != IPPROTO_TCP || ((data[6] & 0x3f) | data[7]) != 0)
			return FAST_PARSE;
		l4off = 20;
		saddr = *(__u32 *)(data + 12);
		daddr = *(__u32 *)(data + 16);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (data + 40 + 14 > end)
			return FAST_PARSE;
		if (data[6] != IPPROTO_TCP)
			return FAST_PARSE;
		l4off = 40;
		saddr = *(__u32 *)(data + 20);
		daddr = *(__u32 *)(data + 36);
	} else {
		return FAST_PASS; // not IP
	}
	th = data + l4off;
	if (tcp_flags_matter(th[13]))
		return FAST_PARSE;
	__u8 *port = egress ? th + 2 : th; // DNS: to port 53, or from it
	if (port[0] == 0 && port[1] == 53)
		return FAST_PARSE;
	// The first bytes of a connection, while it may start like TLS.
	return tls_wanted(skb, th, l4off, saddr, daddr, egress) ? FAST_TLS : FAST_PASS;
}

// tcp_fields fills in seg's TCP fields from the first 14 bytes of the TCP
// header, th: in the packet or copied out of it. doff is the header's
// length, already checked against len, the packet's.
static __always_inline void tcp_fields(struct segment *seg, const __u8 *th, __u32 l4off, __u32 doff,
				       __u32 len)
{
	seg->sport = (__u16)th[0] << 8 | th[1];
	seg->dport = (__u16)th[2] << 8 | th[3];
	seg->seq = (__u32)th[4] << 24 | (__u32)th[5] << 16 | (__u32)th[6] << 8 | th[7];
	seg->ack_seq = (__u32)th[8] << 24 | (__u32)th[9] << 16 | (__u32)th[10] << 8 | th[11];
	seg->flags = th[13];
	seg->l4off = l4off;
	seg->payload_off = l4off + doff;
	seg->payload_len = len - l4off - doff;
}

// transport_in_place fills in seg's transport fields from the TCP or UDP
// header at th (l4off bytes into the packet), as parse_segment_loaded does
// from the copies it loads. end is the end of the linear area.
static __always_inline int transport_in_place(struct __sk_buff *skb, struct segment *seg, __u8 *th,
					      __u8 *end, __u32 l4off)
{
	if (seg->proto == IPPROTO_UDP) {
		if (th + 4 > end || skb->len < l4off + 8)
			return -1;
		seg->sport = (__u16)th[0] << 8 | th[1];
		seg->dport = (__u16)th[2] << 8 | th[3];
		seg->payload_off = l4off + 8;
		seg->payload_len = skb->len - l4off - 8;
		return 1;
	}
	if (th + 14 > end)
		return -1;
	__u32 doff = (th[12] >> 4) * 4;
	if (doff < 20 || skb->len < l4off + doff)
		return -1;
	tcp_fields(seg, th, l4off, doff, skb->len);
	return 1;
}

// parse_in_place parses the usual packet from its headers in place, with
// no helper call: IPv4 (options included) or IPv6 without extension
// headers, then TCP or UDP, headers in the linear area. It returns 1 when
// it did, with seg as parse_segment_loaded would fill it; 0 for a packet
// that parse_segment_loaded rejects too; -1 for one it leaves to
// parse_segment_loaded (extension headers, headers beyond the linear area,
// anything odd).
static __always_inline int parse_in_place(struct __sk_buff *skb, struct segment *seg)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;
	__u32 l4off;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (data + 20 > end)
			return -1;
		if ((data[0] >> 4) != 4 || (data[0] & 0x0f) < 5)
			return -1;
		// A non-first fragment carries no TCP header.
		if (((data[6] & 0x1f) | data[7]) != 0)
			return 0;
		seg->proto = data[9];
		l4off = (data[0] & 0x0f) * 4;
		__builtin_memcpy(&seg->saddr[0], data + 12, 4);
		__builtin_memcpy(&seg->daddr[0], data + 16, 4);
		seg->family = FAMILY_IPV4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (data + 40 > end)
			return -1;
		if ((data[0] >> 4) != 6)
			return -1;
		seg->proto = data[6];
		l4off = 40;
		__builtin_memcpy(seg->saddr, data + 8, 16);
		__builtin_memcpy(seg->daddr, data + 24, 16);
		seg->family = FAMILY_IPV6;
	} else {
		return 0;
	}
	if (seg->proto != IPPROTO_TCP && seg->proto != IPPROTO_UDP)
		return -1; // extension headers, or what parse_segment_loaded rejects
	return transport_in_place(skb, seg, data + l4off, end, l4off);
}

// Parse the network and transport headers. skb->data starts at the network
// header in cgroup_skb programs. Returns 0 for anything that is not a
// complete, first-fragment TCP segment or UDP datagram.
static __always_inline int parse_segment_loaded(struct __sk_buff *skb, struct segment *seg);

static __always_inline int parse_segment(struct __sk_buff *skb, struct segment *seg)
{
	// Every field defined on every path: the compiler merges the two
	// parses' stores, and the verifier refuses a register left undefined
	// on a path where the field is not written.
	__builtin_memset(seg, 0, sizeof(*seg));
	int ok = parse_in_place(skb, seg);
	if (ok >= 0)
		return ok;
	return parse_segment_loaded(skb, seg);
}

// parse_segment_loaded is parse_segment with bpf_skb_load_bytes: the long
// way, which copes with extension headers and headers beyond the linear
// area.
static __always_inline int parse_segment_loaded(struct __sk_buff *skb, struct segment *seg)
{
	__u32 l4off;
	__u8 proto;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 ip[20];
		if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)))
			return 0;
		if ((ip[0] >> 4) != 4 || (ip[0] & 0x0f) < 5)
			return 0;
		// A non-first fragment carries no TCP header.
		if (((ip[6] & 0x1f) | ip[7]) != 0)
			return 0;
		proto = ip[9];
		l4off = (ip[0] & 0x0f) * 4;
		__builtin_memcpy(&seg->saddr[0], &ip[12], 4);
		__builtin_memcpy(&seg->daddr[0], &ip[16], 4);
		seg->family = FAMILY_IPV4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 ip6[40];
		if (bpf_skb_load_bytes(skb, 0, ip6, sizeof(ip6)))
			return 0;
		if ((ip6[0] >> 4) != 6)
			return 0;
		proto = ip6[6];
		l4off = 40;
		__builtin_memcpy(seg->saddr, &ip6[8], 16);
		__builtin_memcpy(seg->daddr, &ip6[24], 16);
		seg->family = FAMILY_IPV6;

#pragma unroll
		for (int i = 0; i < MAX_IPV6_EXT; i++) {
			__u8 ext[4];
			if (proto != IPPROTO_HOPOPTS && proto != IPPROTO_ROUTING &&
			    proto != IPPROTO_DSTOPTS && proto != IPPROTO_FRAGMENT &&
			    proto != IPPROTO_AH)
				break;
			if (bpf_skb_load_bytes(skb, l4off, ext, sizeof(ext)))
				return 0;
			if (proto == IPPROTO_FRAGMENT) {
				// Fragment offset in the upper 13 bits of bytes 2-3.
				if ((((__u16)ext[2] << 8 | ext[3]) & 0xfff8) != 0)
					return 0;
				l4off += 8;
			} else if (proto == IPPROTO_AH) {
				l4off += ((__u32)ext[1] + 2) * 4;
			} else {
				l4off += ((__u32)ext[1] + 1) * 8;
			}
			proto = ext[0];
		}
	} else {
		return 0;
	}

	seg->proto = proto;
	if (proto == IPPROTO_UDP) {
		__u8 uh[4];
		if (bpf_skb_load_bytes(skb, l4off, uh, sizeof(uh)) || skb->len < l4off + 8)
			return 0;
		seg->sport = (__u16)uh[0] << 8 | uh[1];
		seg->dport = (__u16)uh[2] << 8 | uh[3];
		seg->payload_off = l4off + 8;
		seg->payload_len = skb->len - l4off - 8;
		return 1;
	}
	if (proto != IPPROTO_TCP)
		return 0;

	// Ports, sequence and acknowledgment numbers, data offset and flags.
	__u8 th[14];
	if (bpf_skb_load_bytes(skb, l4off, th, sizeof(th)))
		return 0;
	__u32 doff = (th[12] >> 4) * 4;
	if (doff < 20 || skb->len < l4off + doff)
		return 0;

	tcp_fields(seg, th, l4off, doff, skb->len);
	return 1;
}
