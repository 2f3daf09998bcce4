// What the socket scan (scan.c) needs of the kernel that no uapi header
// declares: the iterator's context, and minimal stubs of the task, file,
// socket and network namespace structures it reads, relocated with CO-RE
// against the running kernel's BTF. scan.c is compiled on its own, so these
// stubs do not meet kernel.h's, which keep to what netflow.c reads.

#pragma once

#include <linux/types.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// Socket states (include/net/tcp_states.h).
#define TCP_LISTEN 10

#define AF_INET 2
#define AF_INET6 10
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

// The context of SEC("iter/task_file"): one open file of one task.
struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

// The ephemeral port range, net.ipv4.ip_local_port_range, in its two
// layouts: one u32 with the low port in its low 16 bits and the high port
// in its high 16 bits (Linux 6.3 and later), or two ints before. CO-RE
// matches a flavor (the part after ___) only where the field's type fits.
struct local_ports___packed {
	__u32 range;
} __attribute__((preserve_access_index));

struct local_ports___pair {
	int range[2];
} __attribute__((preserve_access_index));

// Reached only through one of the flavors above.
struct local_ports {
	char unread;
} __attribute__((preserve_access_index));

struct netns_ipv4 {
	struct local_ports ip_local_ports;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
	struct netns_ipv4 ipv4;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	unsigned char skc_ipv6only : 1;
	struct {
		struct net *net;
	} skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	struct {
		__s64 counter;
	} skc_cookie;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	__u32 sk_max_ack_backlog;
} __attribute__((preserve_access_index));

// A port's bind bucket (include/net/inet_hashtables.h). fastreuse is -1 in
// a bucket that connect() made (__inet_hash_connect), 0 or 1 in one that
// bind() or listen() made.
struct inet_bind_bucket {
	signed char fastreuse;
} __attribute__((preserve_access_index));

struct inet_sock {
	struct sock sk;
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	struct inet_sock icsk_inet;
	struct inet_bind_bucket *icsk_bind_hash;
} __attribute__((preserve_access_index));

struct tcp_sock {
	struct inet_connection_sock inet_conn;
} __attribute__((preserve_access_index));

struct mptcp_sock {
	struct sock *first; // the first subflow, a TCP socket
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct inode {
	unsigned short i_mode;
	unsigned long i_ino;
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
	struct inode *f_inode;
	void *private_data;
} __attribute__((preserve_access_index));

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct task_struct {
	int tgid;
	struct mm_struct *mm;
} __attribute__((preserve_access_index));
