//go:build ignore

// The scan at start: a BPF iterator over every open file of every task
// (Linux 5.8+) that writes one struct scan_record (scan.h) for each TCP
// socket a process holds, with the evidence of its direction that the
// kernel keeps (its bind bucket, the backlog it may have copied from a
// listener, its namespace's ephemeral port range) and the process. User
// space (scan.go, internal/sockscan) reads the records, once, right after
// the cgroup programs are attached, and decides the directions.
//
// Iterators run as tracing programs: loading one needs CAP_BPF and
// CAP_PERFMON, and it sees every task of the reader's PID namespace, in
// every network namespace, without setns or /proc. A file is a socket when
// bpf_sock_from_file (Linux 5.11) says so: it checks the file's operations;
// before 5.11, when its inode is a socket's (S_ISSOCK), whose file holds
// the socket in private_data.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "netflow.h"
#include "scan.h"
#include "scan_kernel.h"

char __license[] SEC("license") = "Dual MIT/GPL";

// Put the types bpf2go generates for Go (gen.go) into the object's BTF.
const struct scan_record *unused_scan_record __attribute__((unused));
const enum scan_flags *unused_scan_flags __attribute__((unused));

// Set by the loader: 1 where the kernel allows bpf_get_socket_cookie in
// tracing programs (Linux 5.12), which gives every socket its cookie (the
// cgroup programs will get the same one); 0 reads the cookie the socket
// already has, 0 if none was ever asked for.
volatile const __u32 use_cookie_helper = 1;

// Set by the loader: 1 where the kernel has bpf_sock_from_file (Linux 5.11);
// 0 tells sockets by their inode's mode.
volatile const __u32 use_sock_from_file = 1;

#define S_IFMT 00170000
#define S_IFSOCK 0140000

// sock_of returns the sock of a file's socket, NULL if the file is no
// socket. With bpf_sock_from_file the verifier knows the pointer's type,
// which bpf_get_socket_cookie needs (it is newer than the helper anyway).
static __always_inline struct sock *sock_of(struct file *file)
{
	if (use_sock_from_file) {
		struct socket *sock = bpf_sock_from_file(file);
		return sock ? sock->sk : 0;
	}
	if ((file->f_inode->i_mode & S_IFMT) != S_IFSOCK)
		return 0;
	// sock_alloc_file() keeps the socket there.
	struct socket *sock = BPF_CORE_READ(file, private_data);
	return BPF_CORE_READ(sock, sk);
}

// port_range reads the ephemeral port range of net into rec.
static __always_inline void port_range(struct scan_record *rec, struct net *net)
{
	void *ports = &net->ipv4.ip_local_ports;
	struct local_ports___packed *packed = ports;
	struct local_ports___pair *pair = ports;

	if (bpf_core_field_exists(packed->range)) {
		__u32 range = 0;
		if (bpf_core_read(&range, sizeof(range), &packed->range))
			return;
		rec->port_low = range & 0xffff;
		rec->port_high = range >> 16;
	} else if (bpf_core_field_exists(pair->range)) {
		int range[2] = {};
		if (bpf_core_read(&range, sizeof(range), &pair->range))
			return;
		rec->port_low = range[0];
		rec->port_high = range[1];
	} else {
		return;
	}
	rec->flags |= SCAN_F_PORT_RANGE;
}

// write_sock writes the record of sk, if it is an IPv4 or IPv6 TCP socket, to
// the iterator's output; rec already holds the process and maybe the cookie.
// sk is read with CO-RE probe reads, which take the subflow pointer of an
// MPTCP socket too (the verifier does not type it as a socket).
static __always_inline void write_sock(struct seq_file *seq, struct scan_record *rec,
				       struct sock *sk)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	struct sock_common *skc = &sk->__sk_common;
	__u16 family = BPF_CORE_READ(skc, skc_family);
	if (family == AF_INET) {
		rec->family = FAMILY_IPV4;
		bpf_core_read(rec->saddr, 4, &skc->skc_rcv_saddr);
		bpf_core_read(rec->daddr, 4, &skc->skc_daddr);
	} else if (family == AF_INET6) {
		rec->family = FAMILY_IPV6;
		bpf_core_read(rec->saddr, sizeof(rec->saddr), &skc->skc_v6_rcv_saddr);
		bpf_core_read(rec->daddr, sizeof(rec->daddr), &skc->skc_v6_daddr);
		if (BPF_CORE_READ_BITFIELD_PROBED(skc, skc_ipv6only))
			rec->flags |= SCAN_F_V6ONLY;
	} else {
		return;
	}
	if (!rec->cookie)
		rec->cookie = BPF_CORE_READ(skc, skc_cookie.counter);
	rec->state = BPF_CORE_READ(skc, skc_state);
	rec->sport = BPF_CORE_READ(skc, skc_num);
	rec->dport = bpf_ntohs(BPF_CORE_READ(skc, skc_dport));
	struct net *net = BPF_CORE_READ(skc, skc_net.net);
	rec->netns = BPF_CORE_READ(net, ns.inum);
	port_range(rec, net);
	rec->max_ack_backlog = BPF_CORE_READ(sk, sk_max_ack_backlog);
	struct inet_bind_bucket *tb = BPF_CORE_READ((struct inet_connection_sock *)sk,
						    icsk_bind_hash);
	if (tb) {
		rec->bind_fastreuse = BPF_CORE_READ(tb, fastreuse);
		rec->flags |= SCAN_F_BIND_BUCKET;
	}
	bpf_seq_write(seq, rec, sizeof(*rec));
}

SEC("iter/task_file")
int scan_sockets(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	if (!task || !file)
		return 0;
	struct sock *sk = sock_of(file);
	if (!sk)
		return 0;

	struct scan_record rec = {};
	rec.ino = file->f_inode->i_ino;
	rec.pid = task->tgid;
	struct mm_struct *mm = task->mm;
	if (mm) // kernel threads have none
		bpf_probe_read_kernel_str(rec.exe, sizeof(rec.exe),
					  mm->exe_file->f_path.dentry->d_name.name);

	// A kernel without MPTCP has neither the type nor such sockets.
	if (bpf_core_type_exists(struct mptcp_sock) &&
	    BPF_CORE_READ(sk, sk_protocol) == IPPROTO_MPTCP) {
		// The TCP socket that carries the connection, and that the
		// cgroup programs see, is the MPTCP socket's first subflow;
		// no helper takes it, so its cookie is the one it has (often
		// none: user space then matches by addresses).
		sk = BPF_CORE_READ((struct mptcp_sock *)sk, first);
		if (!sk)
			return 0;
		rec.flags |= SCAN_F_MPTCP_SUBFLOW;
	} else if (use_cookie_helper) {
		rec.cookie = bpf_get_socket_cookie(sk);
	}
	write_sock(ctx->meta->seq, &rec, sk);
	return 0;
}
