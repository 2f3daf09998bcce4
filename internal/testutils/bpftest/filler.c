//go:build ignore

// For tests and benchmarks only (package bpftest): fills a ring buffer with
// copies of one record, as fast as BPF_PROG_TEST_RUN repeats it, to measure
// the receiver's read loop from ring buffer to consumer without the network
// in the way. It wakes the reader as the programs do, with the threshold
// that NewFiller sets, and counts the records that did not fit.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "netflow.h"
#include "ring.h"

char __license[] SEC("license") = "Dual MIT/GPL";

// Sized by NewFiller.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

// Set by NewFiller: the programs' wake-up threshold (wakeup_shift).
volatile const __u32 wakeup_shift = 16;

// The record to copy, written by the benchmark.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} record SEC(".maps");

// Records that did not fit in the ring buffer.
__u64 lost = 0;

SEC("socket")
int fill(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct event *e = bpf_map_lookup_elem(&record, &zero);
	if (e) {
		e->cookie++; // each copy a socket of its own
		__u64 pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
		if (bpf_ringbuf_output(&events, e, sizeof(*e),
				       wakeup_flag(pending, sizeof(*e), wakeup_shift)))
			__sync_fetch_and_add(&lost, 1);
	}
	return 0;
}
