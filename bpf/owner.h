// Included by netflow.c after its maps: uses sock_states, self_tgid.
//
// Which process owns a socket: the one that created it, the MPTCP socket's
// owner for the kernel's subflows, or, for an accepted socket, the process
// that first sends or reads on it. Also the collector's own sockets
// (exclude_self), which are marked here and yield nothing.

#pragma once

#include "kernel.h"
#include "sock_state.h"

// set_owner records the current process as the socket's owner: its process
// id and its executable's base name (not the 15-character thread name).
static __always_inline void set_owner(struct sock_state *st)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	st->pid = tgid;
	st->exe[0] = 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	if (mm) // kernel threads have none
		bpf_probe_read_kernel_str(st->exe, sizeof(st->exe),
					  mm->exe_file->f_path.dentry->d_name.name);
	if (self_tgid && tgid == self_tgid)
		__sync_fetch_and_or(&st->flags, SOCK_IGNORE);
}

// copy_owner copies the owner of an MPTCP connection's socket to one of its
// TCP sockets, which the kernel creates without a process. For a subflow
// (confirm) that owner is as good as it gets: its I/O is the kernel's.
static __always_inline void copy_owner(struct sock_state *st, struct bpf_sock *sk, int confirm)
{
	struct mptcp_sock *msk = bpf_skc_to_mptcp_sock(sk);
	if (!msk)
		return;
	struct sock_state *parent = bpf_sk_storage_get(&sock_states, msk, 0, 0);
	if (!parent)
		return;
	st->pid = parent->pid;
	__builtin_memcpy(st->exe, parent->exe, sizeof(st->exe));
	__sync_fetch_and_or(&st->flags,
			    (confirm ? SOCK_OWNER_FROM_IO : 0) | (parent->flags & SOCK_IGNORE));
}

// confirm_owner, from the tracepoints on TCP sends and reads (netflow.c),
// records the owner of an accepted socket: the process that first sends or
// reads on it, which is the one that accepted it (a pre-forked server's
// worker, not the parent that made the listener) or the one it was handed
// to. Both tracepoints fire in that process, for TCP sockets only; they cost
// a socket storage lookup per send and per read that copies data. Optional:
// a kernel without them names no process for incoming connections.
static __always_inline void confirm_owner(struct sock *sk)
{
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (!st || (st->flags & (SOCK_FROM_LISTENER | SOCK_OWNER_FROM_IO)) != SOCK_FROM_LISTENER)
		return;
	set_owner(st);
	__sync_fetch_and_or(&st->flags, SOCK_OWNER_FROM_IO);
}

// ignored says whether the packet's socket is the collector's own.
static __always_inline int ignored(struct __sk_buff *skb)
{
	if (!self_tgid)
		return 0;
	struct bpf_sock *sk = skb->sk;
	if (!sk || !(sk = bpf_sk_fullsock(sk)))
		return 0;
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	return st && (st->flags & SOCK_IGNORE);
}
