// The per-CPU counters of what the programs could not do (enum stat), which
// user space sums and reports.

#pragma once

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &stat);
	if (v)
		*v += 1;
}
