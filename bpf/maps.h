// The maps and load-time constants of the programs (netflow.c): every
// header whose code uses one includes this file at its top. The loader sets
// the constants (volatile const) before loading, and sizes the ring buffer.
// Declared in the order they always were: their offsets in .rodata and .bss
// are in the programs' instructions.

#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "netflow.h"
#include "sock_state.h"

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_state);
} sock_states SEC(".maps");

// What a connecting socket's SYN showed of this host's NAT (claim.h), only
// for sockets whose connection was translated.
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct conn_view);
} translations SEC(".maps");

// Sized by the loader (ring_buffer_size); this is only the default.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// Most DNS payload bytes one record can carry; dns_payload_limit, set by
// the loader, is at most this. A power of two, for the verifier.
#define DNS_PAYLOAD_MAX 8192

// Set by the loader before the programs are loaded; 0 turns DNS off.
volatile const __u32 dns_payload_limit = 4096;

// The reader is woken up each time the data waiting in the ring buffer
// crosses a multiple of 1 << wakeup_shift bytes; otherwise it finds records
// at its next tick (the flush interval). Waking it for every record would
// cost the producing CPU an interrupt and a wake-up, about 1.5 us, most of
// the programs' cost under connection churn; waking it at every record past
// a threshold would cost that for every record while the reader is behind.
volatile const __u32 wakeup_shift = 16;

// The collector's own process id as the kernel counts it (in the initial
// PID namespace), whose sockets yield nothing (exclude_self); 0 keeps them.
volatile const __u32 self_tgid = 0;

// Written by netflow_whoami and netflow_netns_probe: the process id of the
// task that runs it, and the network namespace that DNS records read from a
// socket (0 where the kernel cannot tell: no bpf_cast_to_kern_ctx, before
// Linux 6.3). The globals the loader writes or reads live in sections of
// their own, each a small map it updates or looks up: had it done so
// through a variable in .bss, it would have mapped all of .bss (the TLS
// slots) into the process, which only Go's garbage collector unmaps, and
// the kernel would have kept .bss after the collector's Shutdown.
struct whoami {
	__u32 tgid;
	__u32 netns;
} whoami SEC(".data.whoami") = {};

// Set by the loader from its probes of the kernel (features.go): a helper
// the kernel lacks is called only behind one of these, so the verifier,
// which checks the helpers of reachable code only, never sees it.
//
// owner_exe: how set_owner reads the executable's name (owner.h).
volatile const __u32 owner_exe = 1;
// mptcp_owner: 1 where cgroup_skb has bpf_skc_to_mptcp_sock (Linux 5.19),
// with which MPTCP subflows take their MPTCP socket's owner.
volatile const __u32 mptcp_owner = 1;

// Sockets that the send and receive tracepoints (the fallback for the owner
// of accepted sockets) have nothing more to do for: their owner is known,
// or they were not accepted. A slot, chosen by the socket's hash, holds the
// address of its socket; netflow_state clears it when the socket closes,
// before the kernel can free it and give its address to a new socket. A
// socket whose slot another took is looked up again. Used where
// settled_cache is set: the fallback runs, and netflow_state with it.
#define SETTLED_SLOTS 4096

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SETTLED_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} settled_socks SEC(".maps");

// The states of connecting sockets, which take an entry at their SYN
// instead of socket storage (conn_slots.h): 2^12 entries of 120 bytes
// (480 KiB), preallocated. Few enough that the entries in use stay in the
// caches (2^14 measured 17% more per connection); beyond a few thousand
// connecting sockets open at once on a node, more of them find their entry
// held and take storage, as every socket did before the table. The object
// for kernels without atomics, whose state needs its spin lock in storage,
// uses no table: its map has one unused entry, so that both objects have
// the same maps.
#define CONN_SLOT_BITS 12

#ifndef NETFLOW_NO_ATOMICS
struct conn_slot {
	__u64 cookie; // the holder's socket cookie; 0: never taken
	struct sock_state st;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << CONN_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct conn_slot);
} conn_slots SEC(".maps");
#else
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} conn_slots SEC(".maps");
#endif

volatile const __u32 settled_cache = 0;

// The executables' names last read on this CPU, by process (owner.h): a
// process that connects or accepts again and again (a client pool, a
// server's workers) has its name copied from here instead of read from its
// file's dentry (two more pointers and a string copy) each time. Per CPU, so
// only programs nested on one CPU can meet at an entry, which the entry's
// sequence number settles. Used only by the object for kernels with atomics
// (the compare-and-swap); the other has the map, unused, for one Go type.
#define EXE_NAMES 64

struct exe_name {
	__u32 seq;  // odd while being written
	__u32 tgid; // the process
	__u64 file; // its executable's struct file (mm->exe_file); 0: empty
	char exe[EXE_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EXE_NAMES);
	__type(key, __u32);
	__type(value, struct exe_name);
} exe_names SEC(".maps");

// A DNS record is assembled here, then copied into the ring buffer with its
// real length: reserving the maximum for every message would waste the ring.
struct dns_scratch {
	struct dns_event hdr;
	__u8 payload[DNS_PAYLOAD_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_scratch);
} dns_scratch SEC(".maps");

// The kernel's buffer for a new cgroup's path (TRACE_CGROUP_PATH_LEN in
// kernel/cgroup/cgroup-internal.h): the tracepoint gives at most 1023 bytes.
#define TRACE_CGROUP_PATH_LEN 1024

// A path that does not fit in a record is measured here (cgroup.h).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[TRACE_CGROUP_PATH_LEN]);
} cgroup_path_scratch SEC(".maps");

// TLS server names (tls.h, tls_slot.h).
//
// Most bytes of a connection's start that are copied: the largest
// tls_hello_limit. A power of two, for the verifier. Browsers' ClientHellos
// with post-quantum key shares are about 1,800 bytes, with a resumption
// ticket and ECH about 2,500.
#define TLS_HELLO_MAX 8192

// Set by the loader; 0 turns TLS off (the verifier then drops this code,
// since a frozen constant is known to it).
volatile const __u32 tls_hello_limit = TLS_HELLO_MAX;

// Slots: a power of two. 2^15 slots of 8 bytes: 256 KiB, in .bss.
#define TLS_SLOT_BITS 15

struct tls_slot {
	__u32 base;    // sequence number of the stream's first byte
	__u16 limit;   // bytes wanted from base (at most TLS_HELLO_MAX); 0: none
	__u16 started; // 1: the first segment was seen and starts like a ClientHello
};

// Global arrays (in .bss), not array maps: the programs index them
// directly, with no lookup call, no key on the stack and no NULL check.
struct tls_slot tls_slots[1 << TLS_SLOT_BITS];

// tls_armed[i] is 1 while slot i may want bytes (its limit is not 0): what
// the fast path reads for every data segment, 32 KiB that stay in the CPU's
// cache, where a read of the 256 KiB of slots at a hashed index missed it
// (tls_slot.h). A byte per slot, not a bit: written with plain stores, no
// read-modify-write that two CPUs arming two slots could interleave.
__u8 tls_armed[1 << TLS_SLOT_BITS];

// A piece is assembled here, then copied into the ring buffer with its real
// length.
struct tls_scratch {
	struct tls_event hdr;
	__u8 payload[TLS_HELLO_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_scratch);
} tls_scratch SEC(".maps");

// owner_at_connect: 1 where cgroup_skb programs can read the current task
// (owner_exe, set from probes of cgroup_skb): a connecting socket's owner is
// the process that sends its SYN, in connect(), and cgroup/sock_create makes
// socket storage only for the sockets that need it from their creation
// (MPTCP sockets, whose subflows the kernel makes, and the collector's own).
// 0: sock_create records the creator of every TCP and UDP socket.
volatile const __u32 owner_at_connect = 1;

// Set by the loader after the optional programs load (a global, not a
// constant: it is known only then). 1: netflow_state runs. It writes an
// accepted socket's start when the kernel makes it from its listener, and
// the time a socket moves to CLOSE, which frees its conn_slots entry. 0 (no
// netflow_state: Linux 5.10): the listener's storage takes the time of each
// SYN, which the socket accepted next inherits by the clone, and no
// connecting socket takes a conn_slots entry (none would be freed).
__u32 state_tracepoint SEC(".data.state") = 0;
