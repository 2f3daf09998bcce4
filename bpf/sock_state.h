// What the programs remember about a socket between packets and tracepoints:
// how it started (direction, start time), who owns it, and whether its end
// was written, which is what makes the end record once-only.

#pragma once

#include <linux/types.h>

#include "netflow.h"

// sock_state.flags
#define SOCK_OUTGOING (1 << 0)      // the socket sent the SYN
#define SOCK_FROM_LISTENER (1 << 1) // state copied from a listener: accepted socket
#define SOCK_ENDED (1 << 2)         // the end record was written
#define SOCK_LOST (1 << 3)          // an end record could not be written (ring full)
#define SOCK_IGNORE (1 << 4)        // the collector's own socket (exclude_self)
#define SOCK_OWNER_FROM_IO (1 << 5) // owner: the process that sent or read on it

// Per-socket state, freed by the kernel together with the socket. BPF_F_CLONE
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
	// The owner (owner.h): the process that created the socket (for an
	// accepted one: that created its listener; for a subflow: the MPTCP
	// socket's) until, with SOCK_OWNER_FROM_IO, the process that sent or
	// read on it.
	__u32 pid;
	char exe[EXE_LEN];
};
