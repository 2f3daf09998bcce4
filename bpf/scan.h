// The record of the socket scan (scan.c), shared with Go: bpf2go generates
// its Go twin (the -type list of the scan line in gen.go), and scan.go reads
// the iterator's output as an array of it.

#pragma once

#include <linux/types.h>

#include "netflow.h"

// scan_record.flags: which evidence the record carries.
enum scan_flags {
	// bind_fastreuse holds the socket's bind bucket's fastreuse; without
	// it the socket had no bind bucket (closed, or never bound).
	SCAN_F_BIND_BUCKET = 1 << 0,
	// port_low..port_high is the ephemeral port range of the socket's
	// network namespace.
	SCAN_F_PORT_RANGE = 1 << 1,
	// An IPv6 socket with IPV6_V6ONLY: as a listener, it takes no IPv4.
	SCAN_F_V6ONLY = 1 << 2,
	// A subflow reached through the MPTCP socket that a process holds.
	SCAN_F_MPTCP_SUBFLOW = 1 << 3,
};

// One TCP socket that a process holds, as the iterator found it. The same
// socket comes once per process that holds it (fork, SCM_RIGHTS).
struct scan_record {
	// Socket cookie; 0: the kernel would not give it.
	__u64 cookie;
	// Inode of the socket's file (socket:[ino]), the same for every holder.
	__u64 ino;
	__u32 netns; // inode of the socket's network namespace
	__u32 pid;   // process (tgid) that holds it
	// sk_max_ack_backlog: a listener's, copied into its accepted sockets.
	__u32 max_ack_backlog;
	__u32 flags; // enum scan_flags
	__u8 family; // enum family
	__u8 state;  // TCP state (include/net/tcp_states.h)
	// With SCAN_F_BIND_BUCKET: -1 in a bucket that connect() made.
	__s8 bind_fastreuse;
	__u8 _pad;
	__u16 sport; // local port, host byte order
	__u16 dport; // remote port
	// With SCAN_F_PORT_RANGE: net.ipv4.ip_local_port_range.
	__u16 port_low;
	__u16 port_high;
	__u8 saddr[16]; // local address; IPv4 in bytes 0-3
	__u8 daddr[16]; // remote address
	__u32 _pad2;
	char exe[EXE_LEN]; // the holder's executable's base name, NUL-terminated
};
