//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// Features says what the running kernel gives the loaded programs, as Load
// found by probing it (never from its version: distributions backport).
// What a kernel cannot give is absent from records, and Objects.Unavailable
// names the missing kernel feature.
type Features struct {
	// Atomics: the kernel has atomic fetch operations (Linux 5.12), and the
	// object built with them is loaded; without them, the object built
	// with a bpf_spin_lock in the socket's state, which gives the same.
	Atomics bool
	// DNSNetns: DNS records carry their socket's network namespace, read
	// through the bpf_cast_to_kern_ctx kfunc (Linux 6.3), and the DNS cache
	// keeps namespaces apart; without it the cache is shared by all of
	// them. (Connection records carry theirs on every kernel: the programs
	// read it through bpf_skc_to_tcp_sock.)
	DNSNetns bool
	// EndsWithoutFINOrRST: connections that end with no FIN or RST (a
	// timeout, an ICMP error, a connect given up) have a record
	// (netflow_state: a tp_btf program with socket storage, Linux 5.11).
	EndsWithoutFINOrRST bool
	// OwnerOfAccepted says how accepted sockets learn their owner process.
	OwnerOfAccepted OwnerPath
	// OwnerExecutable: owners come with their executable's name (from
	// bpf_get_current_task_btf, Linux 5.11, or else bpf_get_current_task
	// and probe reads).
	OwnerExecutable bool
	// OwnerAtConnect: a connecting socket's owner is the process that
	// sends its SYN in connect(), read by the egress program, and only the
	// sockets that connect or are accepted get socket storage (MPTCP
	// sockets and the collector's own also at their creation). Without it
	// (cgroup_skb programs cannot read the current task), cgroup/sock_create
	// names the creator of every TCP and UDP socket, which then has socket
	// storage from its creation.
	OwnerAtConnect bool
	// MPTCP: the kernel has MPTCP sockets.
	MPTCP bool
	// MPTCPOwner: the TCP subflows of MPTCP sockets take their MPTCP
	// socket's owner (bpf_skc_to_mptcp_sock in cgroup_skb, Linux 5.19).
	MPTCPOwner bool
	// CgroupCreation: new cgroups are reported as they are created
	// (netflow_cgroup_mkdir), not only found by walks of the tree.
	CgroupCreation bool
	// TLSServerNames: the programs copy the first bytes of connections
	// that start like a TLS ClientHello: the kernel's verifier accepted the
	// TLS programs (tls.h), which Load tries first on every kernel.
	TLSServerNames bool
}

// OwnerPath is how accepted sockets learn their owner process.
type OwnerPath string

// Owner paths, best first.
const (
	// OwnerAtAccept: the process that accepts the socket, from fexit of
	// inet_csk_accept (BPF trampolines), once per socket.
	OwnerAtAccept OwnerPath = "accept"
	// OwnerAtFirstIO: the process that first sends or reads on it, from
	// the tcp_sendmsg_locked and tcp_rcv_space_adjust tracepoints, which
	// run for every TCP send and read.
	OwnerAtFirstIO OwnerPath = "first send or read"
	// OwnerAtFirstRead: the same with tcp_rcv_space_adjust only (kernels
	// without the tcp_sendmsg_locked tracepoint): a socket the process
	// never reads from has no owner.
	OwnerAtFirstRead OwnerPath = "first read"
	// OwnerAtFirstSend: tcp_sendmsg_locked only.
	OwnerAtFirstSend OwnerPath = "first send"
	// OwnerUnknown: accepted sockets name no process.
	OwnerUnknown OwnerPath = "none"
)

// Names says whether records name the owner of an accepted socket whose
// process read on it (read) or sent on it (sent) before its end.
func (p OwnerPath) Names(read, sent bool) bool {
	switch p {
	case OwnerAtAccept:
		return true
	case OwnerAtFirstIO:
		return read || sent
	case OwnerAtFirstRead:
		return read
	case OwnerAtFirstSend:
		return sent
	default:
		return false
	}
}

// Names for Options.Without besides the optional programs: kernel features
// that a test makes Load treat as missing, to see what such a kernel gives.
const (
	// WithoutAtomics loads the object without atomic operations.
	WithoutAtomics = "atomics"
	// WithoutTLS loads the programs without the TLS programs, as on a
	// kernel whose verifier refuses them.
	WithoutTLS = "tls"
	// WithoutTaskBTF: no bpf_get_current_task_btf.
	WithoutTaskBTF = "bpf_get_current_task_btf"
	// WithoutMPTCPHelper: no bpf_skc_to_mptcp_sock.
	WithoutMPTCPHelper = "bpf_skc_to_mptcp_sock"
	// WithoutOwnerAtConnect: cgroup_skb programs cannot read the current
	// task (Features.OwnerAtConnect).
	WithoutOwnerAtConnect = "owner_at_connect"
)

// Values of the owner_exe constant (owner.h).
const (
	ownerExeNone        = 0
	ownerExeTaskBTF     = 1
	ownerExeCurrentTask = 2
)

// haveAtomics probes the kernel for atomic fetch operations (Linux 5.12)
// with a program that has one: a kernel without them rejects every
// instruction it does not know before it looks at the code's paths, so
// the object that uses them cannot load there at all.
func haveAtomics() (bool, error) {
	spec := &ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: atomicsProbe()}
	prog, err := ebpf.NewProgram(spec)
	if err == nil {
		prog.Close()
		return true, nil
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) || errors.Is(err, unix.EINVAL) {
		return false, nil
	}
	return false, fmt.Errorf("probe kernel for atomic operations: %w", wrapPermission(err))
}

// atomicsProbe is a program with an atomic fetch-or on the stack.
func atomicsProbe() asm.Instructions {
	fetchOr := asm.FetchOr.Mem(asm.R10, asm.R1, asm.Word, -4)
	// cilium/ebpf v0.22 writes an atomic instruction's immediate (which
	// holds the operation) from Constant, which AtomicOp.Mem leaves 0:
	// without this, the kernel gets an atomic add, which every kernel has.
	fetchOr.Constant = int64(asm.FetchOr >> 8)
	return asm.Instructions{
		asm.StoreImm(asm.R10, -4, 0, asm.Word),
		asm.Mov.Imm(asm.R1, 1),
		fetchOr,
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}
}

// haveHelper says whether programs of type pt may call fn.
func haveHelper(pt ebpf.ProgramType, fn asm.BuiltinFunc) (bool, error) {
	err := features.HaveProgramHelper(pt, fn)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ebpf.ErrNotSupported):
		return false, nil
	default:
		return false, fmt.Errorf("probe kernel for %v in %v programs: %w", fn, pt, wrapPermission(err))
	}
}

// probeHelpers sets the load-time constants of spec that turn off the code
// calling helpers the kernel lacks, and says what is left.
func probeHelpers(spec *ebpf.CollectionSpec, without []string, f *Features) error {
	// How cgroup/sock_create reads the owner, and whether the egress
	// program can read it the same way at a SYN.
	exe, err := ownerExe(ebpf.CGroupSock, without)
	if err != nil {
		return err
	}
	atConnect := exe != ownerExeNone && !slices.Contains(without, WithoutOwnerAtConnect)
	if atConnect {
		skb, err := ownerExe(ebpf.CGroupSKB, without)
		if err != nil {
			return err
		}
		atConnect = skb == exe
	}
	f.OwnerExecutable, f.OwnerAtConnect = exe != ownerExeNone, atConnect
	if err := spec.Variables["owner_exe"].Set(uint32(exe)); err != nil {
		return fmt.Errorf("set owner_exe: %w", err)
	}
	if err := spec.Variables["owner_at_connect"].Set(boolU32(atConnect)); err != nil {
		return fmt.Errorf("set owner_at_connect: %w", err)
	}

	if !slices.Contains(without, WithoutMPTCPHelper) {
		ok, err := haveHelper(ebpf.CGroupSKB, asm.FnSkcToMptcpSock)
		if err != nil {
			return err
		}
		f.MPTCPOwner = ok
	}
	if err := spec.Variables["mptcp_owner"].Set(boolU32(f.MPTCPOwner)); err != nil {
		return fmt.Errorf("set mptcp_owner: %w", err)
	}
	f.MPTCP = haveMPTCP()
	return nil
}

// ownerExe says how programs of type pt can read the current task's
// executable name (owner.h): ownerExeNone where they cannot.
func ownerExe(pt ebpf.ProgramType, without []string) (int, error) {
	// Every way to the name reads it with bpf_probe_read_kernel_str.
	str, err := haveHelper(pt, asm.FnProbeReadKernelStr)
	if err != nil || !str {
		return ownerExeNone, err
	}
	if !slices.Contains(without, WithoutTaskBTF) {
		ok, err := haveHelper(pt, asm.FnGetCurrentTaskBtf)
		if err != nil || ok {
			return ownerExeTaskBTF, err
		}
	}
	task, err := haveHelper(pt, asm.FnGetCurrentTask)
	if err != nil {
		return ownerExeNone, err
	}
	read, err := haveHelper(pt, asm.FnProbeReadKernel)
	if err != nil {
		return ownerExeNone, err
	}
	if task && read {
		return ownerExeCurrentTask, nil
	}
	return ownerExeNone, nil
}

// haveMPTCP says whether the kernel makes MPTCP sockets (CONFIG_MPTCP and
// net.mptcp.enabled in this network namespace).
func haveMPTCP() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_MPTCP)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// unavailable lists what f lacks that no optional program's failure
// already names.
func (f Features) unavailable() []Unavailable {
	var out []Unavailable
	if !f.DNSNetns {
		out = append(out, Unavailable{
			Feature: "the bpf_cast_to_kern_ctx kfunc in cgroup_skb programs (Linux 6.3)",
			Absent: "the network namespace of DNS messages: the DNS cache is shared by all network namespaces " +
				"(a name answered in one can name the same address in another)",
		})
	}
	if !f.OwnerExecutable {
		out = append(out, Unavailable{
			Feature: "bpf_get_current_task_btf or bpf_get_current_task in cgroup/sock_create programs (Linux 5.11)",
			Absent:  "process.executable.name of connecting sockets",
		})
	}
	if f.MPTCP && !f.MPTCPOwner {
		out = append(out, Unavailable{
			Feature: "bpf_skc_to_mptcp_sock in cgroup_skb programs (Linux 5.19)",
			Absent:  "the owner process of MPTCP connections (their TCP subflows; Go listens and dials with MPTCP by default)",
		})
	}
	return out
}

// checkKernel names the missing feature instead of a verifier log.
func checkKernel() error {
	checks := []struct {
		have func() error
		what string
	}{
		{func() error { return features.HaveProgramType(ebpf.CGroupSKB) }, "cgroup_skb programs (Linux 4.10)"},
		{func() error { return features.HaveMapType(ebpf.SkStorage) }, "socket-local storage (Linux 5.2)"},
		{func() error { return features.HaveMapType(ebpf.RingBuf) }, "BPF ring buffers (Linux 5.8)"},
		{func() error { return features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnSkcToTcpSock) }, "bpf_skc_to_tcp_sock in cgroup_skb (Linux 5.9, BTF)"},
	}
	for _, c := range checks {
		err := c.have()
		if errors.Is(err, ebpf.ErrNotSupported) {
			// The kernel hides helpers that read kernel memory from
			// programs loaded without CAP_PERFMON: a permission problem
			// that looks like a missing feature.
			if !hasPerfmon() {
				return fmt.Errorf("%w (missing CAP_PERFMON; the kernel then hides %s)", ErrPermission, c.what)
			}
			return fmt.Errorf("%w: %s", ErrUnsupportedKernel, c.what)
		}
		if err != nil {
			return fmt.Errorf("probe kernel for %s: %w", c.what, wrapPermission(err))
		}
	}
	return nil
}

// What records lack when the TLS programs (tls.h) do not load.
const (
	tlsFeature  = "a verifier that accepts the TLS programs, with which the programs copy TLS ClientHellos"
	tlsPrograms = "netflow_tls_ingress, netflow_tls_egress"
	tlsAbsent   = "netflow.tls.server_name, and netflow.peer.name from it"
)
