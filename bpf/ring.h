// Ring buffer wake-ups, shared by the programs and the benchmark filler.

#pragma once

#include <linux/bpf.h>

// wakeup_flag chooses whether a record of size bytes wakes the reader up:
// when it makes the data waiting in the ring buffer (pending, without it)
// cross a multiple of 1 << shift bytes. Otherwise the reader finds it at its
// next tick. A wake-up costs the producing CPU an interrupt and a task
// wake-up, about 1.5 us: for every record, that would be most of the
// programs' cost under connection churn.
static __always_inline __u64 wakeup_flag(__u64 pending, __u64 size, __u32 shift)
{
	size = (size + 8 + 7) & ~7ULL; // with the ring's record header, aligned
	return (pending >> shift) != ((pending + size) >> shift) ? BPF_RB_FORCE_WAKEUP
								 : BPF_RB_NO_WAKEUP;
}
