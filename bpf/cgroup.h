// The cgroups as they are created. Records carry a socket's cgroup id; user
// space turns it into a path (and a container id) with a map that it fills
// by walking the cgroup tree. A container created and removed between two
// walks would never be in it, so the cgroup_mkdir tracepoint reports every
// new directory of the cgroup v2 hierarchy: its id, its parent's and its
// path. It fires while the directory is still hidden (before
// kernfs_activate), so its record is in the ring buffer before any process,
// hence any socket, can be in the cgroup, and the reader learns the path
// before the first record that needs it.
//
// The path is the kernel's cgroup_path(): kernfs_path() from the root of the
// hierarchy, never from a cgroup namespace's root (cgroup_path_ns() would
// be that), so it is the same whichever namespace the collector runs in;
// user space places it under its mount point (internal/cgroupv2).

#pragma once

#include "maps.h"
#include "kernel.h"
#include "netflow.h"
#include "ring.h"
#include "stats.h"

// The hierarchy id of cgroup v2, the default hierarchy: the kernel sets it
// up first, at boot, and numbers hierarchies from 0 (cgroup_init_root_id).
// cgroup v1 hierarchies, mounted on hybrid hosts next to it, are numbered
// from 1 (the second column of /proc/cgroups). Each hierarchy numbers its
// cgroups from its own counter, so their ids collide with cgroup v2's.
#define CGROUP_V2_HIERARCHY_ID 0

static __always_inline void emit_cgroup(struct cgroup *cgrp, const char *path)
{
	if (cgrp->root->hierarchy_id != CGROUP_V2_HIERARCHY_ID)
		return;
	struct cgroup_event *c = bpf_ringbuf_reserve(&events, sizeof(*c), 0);
	if (!c) {
		// User space finds the cgroup at its next walk, if it still
		// exists then.
		count(STAT_CGROUP_LOST);
		return;
	}
	c->type = RECORD_CGROUP;
	c->_pad = 0;
	c->cgroup_id = cgrp->kn->id;
	struct cgroup_subsys_state *parent = cgrp->self.parent;
	c->parent_id = parent ? parent->cgroup->kn->id : 0;

	long n = bpf_probe_read_kernel_str(c->path, sizeof(c->path), path);
	if (n <= 0) {
		bpf_ringbuf_discard(c, 0);
		return;
	}
	__u32 len = n - 1;
	if (n == sizeof(c->path)) {
		// The buffer is full: the path may be longer. Its length, for
		// user space to say so; the path itself is of no use cut short.
		__u32 zero = 0;
		char *buf = bpf_map_lookup_elem(&cgroup_path_scratch, &zero);
		if (buf) {
			long m = bpf_probe_read_kernel_str(buf, TRACE_CGROUP_PATH_LEN, path);
			if (m > 0)
				len = m - 1;
		}
	}
	c->path_len = len;
	c->truncated = len >= sizeof(c->path);

	__u64 pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) -
			((sizeof(*c) + 8 + 7) & ~7ULL);
	bpf_ringbuf_submit(c, wakeup_flag(pending, sizeof(*c), wakeup_shift));
}
