// Types shared by the kernel programs and, through bpf2go, the Go loader.
// bpf2go generates Go twins of the structs and enums below (the -type list in
// gen.go); event.go copies each record into its twin and takes the enum
// values from the generated constants, so this file alone defines the record
// layout and the values.

#pragma once

#include <linux/types.h>

enum family {
	FAMILY_IPV4 = 4,
	FAMILY_IPV6 = 6,
};

enum direction {
	DIRECTION_UNKNOWN = 0,
	DIRECTION_INCOMING = 1,
	DIRECTION_OUTGOING = 2,
};

enum end_by {
	END_BY_LOCAL = 1,
	END_BY_REMOTE = 2,
};

// Why the connection ended, for this socket.
enum end_reason {
	END_FIN = 1,     // the first FIN
	END_RST = 2,     // the first RST
	END_TIMEOUT = 3, // no FIN or RST: the kernel gave up (connect, retransmission, keepalive)
	END_ABORT = 4,   // no FIN or RST: an error other than a timeout (ICMP, ss -K)
	END_CLOSED = 5,  // no FIN or RST: closed before anything was sent (a connect given up)
};

// event.flags
enum event_flags {
	// An earlier end record of this socket could not be written (ring buffer
	// full); this one is the retry, from a later FIN or RST.
	EVENT_F_RETRIED = 1 << 0,
	// The kernel could not allocate socket storage: no once-only guard, the
	// direction and start time are unknown.
	EVENT_F_NO_STORAGE = 1 << 1,
	// The xlat_* fields hold the connection as this socket's own packets
	// showed it past this host's NAT (equal to the socket's addresses when
	// nothing was translated): the terminating segment left the socket, or
	// its SYN did. Without it nothing is known of a translation.
	EVENT_F_XLAT = 1 << 2,
};

// Bytes kept of an executable's name, with its NUL.
#define EXE_LEN 64

// Indexes into the per-CPU stats array.
enum stat {
	STAT_LOST = 0,        // sockets whose end record did not fit in the ring buffer
	STAT_NO_STORAGE = 1,  // socket storage allocation failures
	STAT_DNS_LOST = 2,    // DNS messages that did not fit in the ring buffer
	STAT_CGROUP_LOST = 3, // cgroup creations that did not fit in the ring buffer
	STAT_TLS_LOST = 4,    // pieces of TLS ClientHellos that did not fit in the ring buffer
	STAT_COUNT = 5,
};

// The first byte of every ring buffer record.
enum record_type {
	RECORD_TCP_END = 1, // struct event
	RECORD_DNS = 2,     // struct dns_event, then the payload
	RECORD_CGROUP = 3,  // struct cgroup_event
	RECORD_TLS = 4,     // struct tls_event, then the payload
};

// One ended connection, as seen by one local socket.
struct event {
	__u8 type;       // RECORD_TCP_END
	__u8 family;     // enum family, as on the wire
	__u8 direction;  // enum direction
	__u8 end_by;     // enum end_by
	__u8 end_reason; // enum end_reason
	__u8 state;      // TCP state (include/net/tcp_states.h) before the end
	__u16 error;     // the socket's error (errno) when the kernel ended it
	__u32 flags;     // enum event_flags
	__u32 netns;     // inode of the socket's network namespace; 0: unknown
	__u64 time_ns;   // CLOCK_MONOTONIC when the terminating segment passed
	__u64 start_ns;  // CLOCK_MONOTONIC of the handshake; 0: not observed
	__u64 cookie;    // socket cookie (SO_COOKIE, sock_diag idiag_cookie)
	__u64 cgroup_id; // cgroup v2 id of the socket
	__u8 saddr[16];  // sender of the terminating segment; IPv4 in bytes 0-3
	__u8 daddr[16];  // receiver of the terminating segment
	__u16 sport;     // host byte order
	__u16 dport;
	__u32 srtt_us; // smoothed round-trip time
	// Counters as the end: sent includes the terminating segment; received
	// includes it when it arrives (its in-order payload).
	__u64 bytes_sent;     // payload bytes sent, each once (retransmissions not counted)
	__u64 bytes_received; // payload bytes received in order
	__u32 segs_sent;      // segments sent, SYN and pure ACKs included
	__u32 segs_received;  // segments received
	__u32 retransmits;    // segments retransmitted
	__u32 pid;            // process that connected or accepted; 0: unknown
	char exe[EXE_LEN];    // its executable's base name, NUL-terminated
	// With EVENT_F_XLAT, the connection as it is on the wire past this
	// host's NAT (netfilter's POSTROUTING), in the family of the addresses
	// above: this socket as its peer sees it, and the peer as the packets
	// reach it. saddr/daddr are always the socket's own view
	// (getsockname/getpeername).
	__u8 xlat_local[16];
	__u8 xlat_peer[16];
	__u16 xlat_lport;
	__u16 xlat_pport;
	__u32 _pad;
};

// A DNS message a socket sent to port 53 or received from it. payload_len
// bytes of the UDP payload (or of the TCP segment's payload, with its 2-byte
// length prefixes) follow the header in the ring buffer record.
struct dns_event {
	__u8 type;         // RECORD_DNS
	__u8 family;       // enum family
	__u8 protocol;     // IPPROTO_UDP or IPPROTO_TCP
	__u8 egress;       // 1: sent by the socket, 0: received
	__u32 netns;       // inode of the socket's network namespace; 0: unknown
	__u32 payload_len; // bytes that follow
	__u32 wire_len;    // payload bytes on the wire (more: truncated copy)
	__u64 time_ns;     // CLOCK_MONOTONIC
	__u64 cookie;      // socket cookie
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 _pad;
};

// Bytes kept of a cgroup's path, with its NUL. The paths that container
// runtimes make are 100 to 200 bytes (a Kubernetes pod's container under the
// systemd driver: /kubepods.slice/kubepods-burstable.slice/
// kubepods-burstable-pod<uid>.slice/cri-containerd-<64 hex>.scope, 191
// bytes); Kubernetes nested in a Docker container (kind:
// /system.slice/docker-<64 hex>.scope/kubelet.slice/kubelet-kubepods.slice/
// ...-pod<uid>.slice/cri-containerd-<64 hex>.scope) takes 320, past 256: so 512.
// The kernel's own buffer for the path is 1024 bytes (TRACE_CGROUP_PATH_LEN).
#define CGROUP_PATH_MAX 512

// A directory of the cgroup v2 hierarchy was created (the cgroup_mkdir
// tracepoint). Written before any process can enter the cgroup, so before
// any record of its sockets.
struct cgroup_event {
	__u8 type;      // RECORD_CGROUP
	__u8 truncated; // 1: the path is longer than CGROUP_PATH_MAX - 1 bytes; path holds its start
	__u16 path_len; // bytes in the path as the tracepoint gave it, without the NUL
	__u32 _pad;
	__u64 cgroup_id; // the cgroup's id: its kernfs node id, the inode number of its directory
	__u64 parent_id; // its parent's id
	// From the root of the cgroup v2 hierarchy (not of the collector's
	// cgroup namespace), NUL-terminated: /system.slice/docker-<id>.scope
	char path[CGROUP_PATH_MAX];
};

// A piece of the first bytes of a connection that starts like a TLS
// ClientHello (tls.h), as a socket sent them (egress) or received them:
// payload_len bytes of the stream from offset on follow the header in the
// ring buffer record. User space joins the pieces of a socket (by cookie)
// and takes the server name from them.
struct tls_event {
	__u8 type;         // RECORD_TLS
	__u8 family;       // enum family
	__u8 egress;       // 1: sent by the socket (it is the TLS client), 0: received
	__u8 listener;     // 1: seen at a listener (TCP Fast Open): the cookie is the listener's
	__u32 netns;       // inode of the socket's network namespace; 0: unknown
	__u32 offset;      // of the first byte that follows, in the stream (0: its first byte)
	__u32 payload_len; // bytes that follow
	__u32 limit;       // most bytes of the stream copied: the record, or the cap
	__u32 _pad;
	__u64 time_ns; // CLOCK_MONOTONIC
	__u64 cookie;  // socket cookie
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 _pad2;
};
