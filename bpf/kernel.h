// What the programs need of the kernel that no uapi header declares:
// constants from its internal headers, minimal stubs of the structures the
// programs read (socket, TCP socket, task), the kfunc that reaches the
// kernel's sk_buff from a cgroup_skb context, and the read of a socket's
// network namespace. The stubs are relocated with CO-RE, so the object does
// not depend on the layout of the kernel it was built on.

#pragma once

#include <linux/types.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// Socket states (include/net/tcp_states.h).
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_FIN_WAIT2 5
#define TCP_TIME_WAIT 6
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define TCP_LISTEN 10
#define TCP_CLOSING 11

#define SOCK_RAW 3
#define AF_INET 2
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

// errno values the state tracepoint tells apart.
#define ECONNRESET 104
#define ETIMEDOUT 110
#define ECONNREFUSED 111

// Minimal kernel types, relocated with CO-RE against the running kernel's
// BTF. Only the fields the programs read are declared.
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	unsigned int skc_hash;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct {
		struct net *net;
	} skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	struct {
		__s64 counter;
	} skc_cookie; // atomic64_t: 0 until something asks for the cookie
} __attribute__((preserve_access_index));

struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup;

struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
} __attribute__((preserve_access_index));

// A cgroup hierarchy: the cgroup v2 one (the default hierarchy) or one of
// cgroup v1's.
struct cgroup_root {
	int hierarchy_id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct cgroup_subsys_state self;
	struct kernfs_node *kn;
	struct cgroup_root *root;
} __attribute__((preserve_access_index));

struct bpf_local_storage;
struct socket;

struct sock {
	struct sock_common __sk_common;
	// socket_lock_t: owned is 1 while a task holds the socket (lock_sock),
	// as connect() does while it sends the SYN.
	struct {
		int owned;
	} sk_lock;
	struct {
		int len;
	} sk_backlog;
	int sk_err;
	__u16 sk_protocol;
	// NULL once no file holds the socket (sock_orphan), or before
	// accept() gives an accepted socket one.
	struct socket *sk_socket;
	struct {
		struct cgroup *cgroup;
	} sk_cgrp_data;
	// The socket's BPF storage: NULL for a socket that no map keeps
	// state for.
	struct bpf_local_storage *sk_bpf_storage;
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct path {
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
} __attribute__((preserve_access_index));

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct task_struct {
	struct mm_struct *mm;
	int tgid; // pid_t: the process id, in the initial PID namespace
} __attribute__((preserve_access_index));

struct mptcp_sock;

// Linux 6.3+; on older kernels the loader leaves it unresolved (weak) and
// DNS records carry netns 0.
extern void *bpf_cast_to_kern_ctx(void *) __ksym __weak;

struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	struct inet_sock icsk_inet;
} __attribute__((preserve_access_index));

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u32 rcv_nxt;
	__u32 rcv_wup;
	__u32 rcv_wnd;
	__u32 snd_una;
	__u32 write_seq;
	__u32 max_window;
	__u32 srtt_us;
	__u32 segs_in;
	__u32 segs_out;
	__u32 total_retrans;
	__u64 bytes_sent;
	__u64 bytes_retrans;
	__u64 bytes_received;
} __attribute__((preserve_access_index));

// netns_of_sock returns the inode number of a socket's network namespace (as
// in /proc/PID/ns/net), read through a pointer the verifier knows: a
// tracepoint's socket, or bpf_skc_to_tcp_sock's in cgroup_skb (Linux 5.9).
static __always_inline __u32 netns_of_sock(struct sock *sk)
{
	return sk->__sk_common.skc_net.net->ns.inum;
}

// netns_of returns the inode number of the network namespace of the packet's
// socket whatever its protocol, or 0 where the kernel cannot tell: the
// cgroup_skb context reaches the kernel's sk_buff only through
// bpf_cast_to_kern_ctx (Linux 6.3). TCP end records use netns_of_sock.
static __always_inline __u32 netns_of(struct __sk_buff *skb)
{
	if (!bpf_cast_to_kern_ctx)
		return 0;
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct sock *sk = kskb->sk;
	if (!sk)
		return 0;
	return netns_of_sock(sk);
}
