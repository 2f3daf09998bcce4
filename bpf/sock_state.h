// What the programs remember about a socket between packets and tracepoints:
// how it started (direction, start time), who owns it, and whether its end
// was written, which is what makes the end record once-only.
//
// Every change of the flags goes through the functions below. The object is
// built twice from this source (gen.go): with atomic fetch operations
// (Linux 5.12), and with -DNETFLOW_NO_ATOMICS for kernels without them, where
// a bpf_spin_lock in the socket's state guards the flags instead. The loader
// picks the object by probing the kernel for atomics (features.go). The two
// must never be mixed: the kernel rejects an object with a single atomic
// instruction it does not know, wherever it is, before it looks at what
// code is reachable.

#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "netflow.h"

// sock_state.flags
#define SOCK_OUTGOING (1 << 0)      // the socket sent the SYN
#define SOCK_FROM_LISTENER (1 << 1) // state copied from a listener: accepted socket
#define SOCK_ENDED (1 << 2)         // the end record was written
#define SOCK_LOST (1 << 3)          // an end record could not be written (ring full)
#define SOCK_IGNORE (1 << 4)        // the collector's own socket (exclude_self)
// The owner is the process that accepted the socket, or that sent or read on
// it first (owner.h), not its listener's maker.
#define SOCK_OWNER_CONFIRMED (1 << 5)

// Per-socket state, in socket storage, which the kernel frees together with
// the socket, or for a connecting socket in an entry of conn_slots
// (conn_slots.h). BPF_F_CLONE
// copies a listener's state into every socket accepted from it, which is how
// an accepted socket learns that it is incoming: its own handshake is only
// ever seen on the listener.
struct sock_state {
	__u64 start_ns;
	__u32 flags;
	// With SOCK_LOST: the end that could not be written, for the retry.
	__u8 lost_reason;
	__u8 lost_by;
	__u16 _pad;
	__u64 lost_time_ns;
	// When the socket moved to CLOSE (netflow_state); 0 while it is open
	// or connects again. What lets a conn_slots entry be taken over
	// (conn_slots.h).
	__u64 closed_ns;
	// The socket's cgroup v2 id and network namespace, which never change:
	// written where the socket's state starts (a connecting socket's SYN, a
	// listener's first SYN, whose accepted sockets have them by the clone),
	// so that its end need not read them again through cold pointers. 0:
	// not written (state made at the end, or by sock_create).
	__u64 cgroup_id;
	__u32 netns;
	// The owner (owner.h): the process that connected the socket (or that
	// created it, where the kernel gives cgroup_skb no task helper; for a
	// subflow: the MPTCP socket's owner) or, for an accepted one, with
	// SOCK_OWNER_CONFIRMED, the process that accepted it or sent or read on
	// it.
	__u32 pid;
#ifdef NETFLOW_NO_ATOMICS
	// Guards flags (the kernel copies the rest of the value without it).
	struct bpf_spin_lock lock;
#endif
	char exe[EXE_LEN] __attribute__((aligned(8))); // copied a word at a time
};

// A connection's two ends from the local socket's side: its own address
// and port, and its peer's; IPv4 in word 0. Kept per socket (the
// translations map) for a connecting socket whose SYN showed this host's
// NAT.
struct conn_view {
	__u32 local[4];
	__u32 peer[4];
	__u16 lport;
	__u16 pport;
	__u32 _pad;
};

#ifdef NETFLOW_NO_ATOMICS

// flags_fetch_or sets bits in st->flags and returns the flags before, as one
// step for every CPU: ingress and egress may race for the end of a socket.
static __always_inline __u32 flags_fetch_or(struct sock_state *st, __u32 bits)
{
	bpf_spin_lock(&st->lock);
	__u32 old = st->flags;
	st->flags = old | bits;
	bpf_spin_unlock(&st->lock);
	return old;
}

// flags_or sets bits in st->flags.
static __always_inline void flags_or(struct sock_state *st, __u32 bits)
{
	flags_fetch_or(st, bits);
}

// flags_restart makes bits the flags, keeping those of keep: a new
// connection on the socket.
static __always_inline void flags_restart(struct sock_state *st, __u32 bits, __u32 keep)
{
	bpf_spin_lock(&st->lock);
	st->flags = bits | (st->flags & keep);
	bpf_spin_unlock(&st->lock);
}

#else

static __always_inline __u32 flags_fetch_or(struct sock_state *st, __u32 bits)
{
	return __sync_fetch_and_or(&st->flags, bits);
}

static __always_inline void flags_or(struct sock_state *st, __u32 bits)
{
	__sync_fetch_and_or(&st->flags, bits);
}

// Only ever on a socket that nothing else writes to at the moment: a
// connecting socket's SYN, a listener's handshake.
static __always_inline void flags_restart(struct sock_state *st, __u32 bits, __u32 keep)
{
	st->flags = bits | (st->flags & keep);
}

#endif
