// Copying the DNS messages of monitored sockets into the ring buffer, from
// which user space builds its cache of names for the end records.

#pragma once

#include "maps.h"
#include "kernel.h"
#include "parse.h"
#include "ring.h"
#include "stats.h"

// emit_dns copies a DNS message (or, for TCP, the segment's payload with its
// length prefixes) that a socket sent to port 53 or received from it.
static __always_inline void emit_dns(struct __sk_buff *skb, struct segment *seg, int egress)
{
	__u32 len = seg->payload_len;
	if (len == 0 || dns_payload_limit == 0)
		return;
	if (len > dns_payload_limit)
		len = dns_payload_limit;
	if (len > DNS_PAYLOAD_MAX)
		len = DNS_PAYLOAD_MAX;
	// The verifier wants a length it can bound without tracking the above.
	len = ((len - 1) & (DNS_PAYLOAD_MAX - 1)) + 1;

	__u32 zero = 0;
	struct dns_scratch *d = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!d)
		return;
	if (bpf_skb_load_bytes(skb, seg->payload_off, d->payload, len)) {
		count(STAT_DNS_LOST);
		return;
	}
	struct dns_event *h = &d->hdr;
	h->type = RECORD_DNS;
	h->family = seg->family;
	h->protocol = seg->proto;
	h->egress = egress;
	h->netns = netns_of(skb);
	h->payload_len = len;
	h->wire_len = seg->payload_len;
	h->time_ns = bpf_ktime_get_ns();
	h->cookie = bpf_get_socket_cookie(skb);
	__builtin_memcpy(h->saddr, seg->saddr, sizeof(h->saddr));
	__builtin_memcpy(h->daddr, seg->daddr, sizeof(h->daddr));
	h->sport = seg->sport;
	h->dport = seg->dport;
	__u64 pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (bpf_ringbuf_output(&events, d, sizeof(*h) + len,
			       wakeup_flag(pending, sizeof(*h) + len, wakeup_shift)))
		count(STAT_DNS_LOST);
}
