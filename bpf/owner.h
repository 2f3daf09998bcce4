// Which process owns a socket: the one that connects it (or, where
// cgroup_skb programs cannot read the current task, that created it), the
// MPTCP socket's owner for the kernel's subflows, or, for an accepted
// socket, the process that accepted it (or, where the kernel cannot tell,
// that first sends or reads on it). Also the collector's own sockets
// (exclude_self), which are marked here and yield nothing.

#pragma once

#include <bpf/bpf_core_read.h>

#include "maps.h"
#include "kernel.h"
#include "sock_state.h"

// owner_exe: how set_owner finds the current task.
#define OWNER_EXE_NONE 0
#define OWNER_EXE_TASK_BTF 1     // bpf_get_current_task_btf (Linux 5.11)
#define OWNER_EXE_CURRENT_TASK 2 // bpf_get_current_task and probe reads

_Static_assert(__builtin_offsetof(struct event, exe) % 8 == 0, "event.exe must be 8-byte aligned");
_Static_assert(__builtin_offsetof(struct exe_name, exe) % 8 == 0,
	       "exe_name.exe must be 8-byte aligned");

// copy_exe copies an executable's name a word at a time (both are 8-byte
// aligned): 16 instructions, where a copy of chars takes 128.
static __always_inline void copy_exe(char *dst, const char *src)
{
	__u64 *d = (__u64 *)dst;
	const __u64 *s = (const __u64 *)src;
#pragma unroll
	for (int i = 0; i < EXE_LEN / 8; i++)
		d[i] = s[i];
}

#ifndef NETFLOW_NO_ATOMICS

// exe_cached copies the name exe_names holds for (tgid, file) into exe and
// says whether it did: only if the entry is that process's and its sequence
// number, even, did not change during the copy (no program nested on this
// CPU rewrote it meanwhile). The barriers keep the compiler from moving the
// entry's loads across the sequence number's.
static __always_inline int exe_cached(struct exe_name *c, char *exe, __u32 tgid, __u64 file)
{
	__u32 seq = *(volatile __u32 *)&c->seq;
	barrier();
	if ((seq & 1) || c->tgid != tgid || c->file != file)
		return 0;
	copy_exe(exe, c->exe);
	barrier();
	if (*(volatile __u32 *)&c->seq == seq)
		return 1;
	exe[0] = 0; // rewritten meanwhile: what was copied may be half of two names
	return 0;
}

// exe_keep writes the name of (tgid, file) into its entry, unless a program
// this one interrupted on this CPU is writing there (odd sequence number):
// the compare-and-swap makes this writer the entry's only one.
static __always_inline void exe_keep(struct exe_name *c, const char *exe, __u32 tgid, __u64 file)
{
	__u32 seq = *(volatile __u32 *)&c->seq;
	if ((seq & 1) || __sync_val_compare_and_swap(&c->seq, seq, seq + 1) != seq)
		return;
	barrier();
	c->tgid = tgid;
	c->file = file;
	copy_exe(c->exe, exe);
	barrier();
	*(volatile __u32 *)&c->seq = seq + 2;
}

#endif

// current_task is the current task as owner_exe reads it: from
// bpf_get_current_task_btf, whose pointers the program may follow, or from
// bpf_get_current_task, whose pointers it must read with probe reads. NULL
// with neither helper.
static __always_inline struct task_struct *current_task(void)
{
	if (owner_exe == OWNER_EXE_TASK_BTF)
		return bpf_get_current_task_btf();
	if (owner_exe == OWNER_EXE_CURRENT_TASK)
		return (struct task_struct *)bpf_get_current_task();
	return 0;
}

// read_exe writes the base name of task's executable into exe (empty for a
// kernel thread, which has none); task is current_task(), of process tgid.
static __always_inline void read_exe(char exe[EXE_LEN], struct task_struct *task, __u32 tgid)
{
	struct file *file;
	exe[0] = 0;
	if (owner_exe == OWNER_EXE_TASK_BTF) {
		struct mm_struct *mm = task->mm;
		if (!mm)
			return;
		file = mm->exe_file;
	} else {
		file = BPF_CORE_READ(task, mm, exe_file);
	}
	if (!file)
		return;
#ifndef NETFLOW_NO_ATOMICS
	__u32 i = tgid & (EXE_NAMES - 1);
	struct exe_name *c = bpf_map_lookup_elem(&exe_names, &i);
	if (c && exe_cached(c, exe, tgid, (__u64)file))
		return;
#endif
	const unsigned char *name;
	if (owner_exe == OWNER_EXE_TASK_BTF)
		name = file->f_path.dentry->d_name.name;
	else
		name = BPF_CORE_READ(file, f_path.dentry, d_name.name);
	if (!name || bpf_probe_read_kernel_str(exe, EXE_LEN, name) < 0)
		return;
#ifndef NETFLOW_NO_ATOMICS
	if (c)
		exe_keep(c, exe, tgid, (__u64)file);
#endif
}

// set_owner records the current process as the socket's owner: its process
// id and its executable's base name (not the 15-character thread name). Not
// inlined: the programs that call it (the owner of accepted sockets, and
// sock_create) run for far more sockets than need it, and the code of
// read_exe inlined in them, never run, made every run slower (a longer
// path through more cache lines: +6 to +12 ns per run, measured).
static __noinline void set_owner(struct sock_state *st)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	st->pid = tgid;
	st->exe[0] = 0;
	struct task_struct *task = current_task();
	if (task)
		read_exe(st->exe, task, tgid);
	if (self_tgid && tgid == self_tgid)
		flags_or(st, SOCK_IGNORE);
}

// set_connecting_owner records the process that sends a connecting
// socket's first SYN (owner_at_connect: cgroup_skb egress), which is the
// task in connect() holding the socket. tp is the socket. A SYN that a
// timer sends (a retransmission, the first one seen when the programs were
// attached after connect()) runs in whatever task it interrupted: only a
// task that holds the socket's lock (sk_lock.owned) is taken, and no
// kernel thread (no mm), whose sockets are no process's.
static __always_inline void set_connecting_owner(struct sock_state *st, struct tcp_sock *tp)
{
	if (!tp || !tp->inet_conn.icsk_inet.sk.sk_lock.owned)
		return;
	// owner_at_connect is 0 without a task helper.
	struct task_struct *task = current_task();
	__u32 tgid;
	st->exe[0] = 0;
	if (owner_exe == OWNER_EXE_TASK_BTF) {
		if (!task->mm)
			return;
		tgid = task->tgid;
	} else {
		if (!BPF_CORE_READ(task, mm))
			return;
		tgid = BPF_CORE_READ(task, tgid);
	}
	read_exe(st->exe, task, tgid);
	st->pid = tgid;
	if (self_tgid && tgid == self_tgid)
		flags_or(st, SOCK_IGNORE);
}

// copy_owner copies the owner of an MPTCP connection's socket to one of its
// TCP sockets, which the kernel creates without a process. For a subflow
// (confirm) that owner is as good as it gets: its I/O is the kernel's.
static __always_inline void copy_owner(struct sock_state *st, struct bpf_sock *sk, int confirm)
{
	if (!mptcp_owner)
		return; // no bpf_skc_to_mptcp_sock (before Linux 5.19)
	struct mptcp_sock *msk = bpf_skc_to_mptcp_sock(sk);
	if (!msk)
		return;
	struct sock_state *parent = bpf_sk_storage_get(&sock_states, msk, 0, 0);
	if (!parent)
		return;
	st->pid = parent->pid;
	copy_exe(st->exe, parent->exe);
	flags_or(st, (confirm ? SOCK_OWNER_CONFIRMED : 0) | (parent->flags & SOCK_IGNORE));
}

// confirm_owner records the current process as the owner of an accepted
// socket whose owner is not known yet; it is called when the socket is
// accepted (fexit of inet_csk_accept, where the kernel allows BPF
// trampolines), in the process that accepts it: a pre-forked server's
// worker, not the parent that made the listener.
static __always_inline void confirm_owner(struct sock *sk)
{
	if (!sk->sk_bpf_storage)
		return; // no state: not watched
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (!st || (st->flags & (SOCK_FROM_LISTENER | SOCK_OWNER_CONFIRMED)) != SOCK_FROM_LISTENER)
		return;
	set_owner(st);
	flags_or(st, SOCK_OWNER_CONFIRMED);
}

// settled_slot is the slot of settled_socks for sk.
static __always_inline __u64 *settled_slot(struct sock *sk)
{
	__u32 i = sk->__sk_common.skc_hash & (SETTLED_SLOTS - 1);
	return bpf_map_lookup_elem(&settled_socks, &i);
}

// forget_settled clears sk's slot, if it holds sk: it is closing.
static __always_inline void forget_settled(struct sock *sk)
{
	__u64 *slot = settled_slot(sk);
	if (slot && *slot == (__u64)sk)
		*slot = 0;
}

// confirm_owner_io is confirm_owner where the kernel has no trampolines:
// from the tracepoints on TCP sends and reads, in the process that first
// sends or reads on the socket, which accepted it or was handed it. They
// run for every TCP send and read on the host, so the sockets that need
// nothing leave first: those without socket storage (not watched), then
// those in settled_socks (owner known, or not accepted), before the storage
// lookup.
static __always_inline void confirm_owner_io(struct sock *sk)
{
	if (!sk->sk_bpf_storage)
		return;
	__u64 *slot = 0;
	if (settled_cache) {
		slot = settled_slot(sk);
		if (slot && *slot == (__u64)sk)
			return;
	}
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (!st)
		return;
	if ((st->flags & (SOCK_FROM_LISTENER | SOCK_OWNER_CONFIRMED)) == SOCK_FROM_LISTENER) {
		set_owner(st);
		flags_or(st, SOCK_OWNER_CONFIRMED);
	}
	// Settled, unless it is closing: netflow_state may have passed.
	if (slot && sk->__sk_common.skc_state != TCP_CLOSE)
		*slot = (__u64)sk;
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
