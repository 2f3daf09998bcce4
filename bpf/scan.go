//go:build linux

package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// ScanFeature names what ScanSockets needs of the kernel, for the warning
// when it cannot run.
const ScanFeature = "BPF task_file iterator"

// BindBucket says what made the bind bucket of a socket's local port.
type BindBucket uint8

// Bind buckets.
const (
	BindUnknown   BindBucket = iota // the socket has none (closed, never bound)
	BindByConnect                   // connect() chose the port (fastreuse -1): the socket connected
	BindByBind                      // bind() or listen() made it (fastreuse 0 or 1)
)

func (b BindBucket) String() string {
	switch b {
	case BindByConnect:
		return "connect"
	case BindByBind:
		return "bind"
	default:
		return "none"
	}
}

// ScanSocket is one TCP socket that a process holds, as ScanSockets found
// it: the socket's addresses and the evidence of its direction that the
// kernel keeps.
type ScanSocket struct {
	// Cookie is the socket cookie; 0 when the kernel did not give it
	// (before Linux 5.12, for a socket whose cookie nobody asked for).
	Cookie uint64
	// Inode of the socket's file: with the addresses, tells the sockets
	// that processes share apart from distinct ones.
	Inode uint64
	Netns uint32 // inode of the socket's network namespace
	// The process that holds it (one of them, for a shared socket).
	PID        uint32
	Executable string
	State      uint8 // TCP state (include/net/tcp_states.h)
	// Local and Remote as on the wire: the IPv4 traffic of a dual-stack
	// socket has IPv4 addresses.
	Local, Remote netip.AddrPort
	// IPv6Only: an IPv6 socket with IPV6_V6ONLY (a listener that takes no
	// IPv4).
	IPv6Only bool
	// Backlog is sk_max_ack_backlog: a listener's listen() backlog, which
	// the kernel copies into every socket accepted from it.
	Backlog uint32
	// BindBucket says what made the local port's bind bucket.
	BindBucket BindBucket
	// EphemeralPorts is the ephemeral port range of the socket's network
	// namespace (net.ipv4.ip_local_port_range); zero when unknown.
	EphemeralPorts PortRange
	// MPTCPSubflow: the first subflow of an MPTCP socket that the process
	// holds (the TCP socket that the cgroup programs see).
	MPTCPSubflow bool
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Low, High uint16 }

// Contains reports whether port is in r.
func (r PortRange) Contains(port uint16) bool { return r.Low != 0 && r.Low <= port && port <= r.High }

// TCP states of ScanSocket.State.
const (
	StateListen = 10
)

// ScanFeatures says which optional helpers the scan program used.
type ScanFeatures struct {
	// CookieHelper: bpf_get_socket_cookie in iterators (Linux 5.12); without
	// it, sockets whose cookie nobody asked for have Cookie 0.
	CookieHelper bool
	// SockFromFile: bpf_sock_from_file (Linux 5.11); without it, a file is
	// a socket when its inode's mode says so, which gives the same.
	SockFromFile bool
}

var scanRecordSize = int(unsafe.Sizeof(scanScanRecord{}))

// ScanSockets returns every TCP socket (IPv4 and IPv6, listeners included)
// that a process of this PID namespace holds, in every network namespace,
// once per process that holds it. It runs a BPF iterator over the open
// files of all tasks: it needs CAP_BPF and CAP_PERFMON, and the task_file
// iterator (Linux 5.8). An error wraps ErrUnsupportedKernel when the kernel
// cannot run it.
func ScanSockets() ([]ScanSocket, ScanFeatures, error) {
	return scanSockets(scanCandidates)
}

// scanCandidates are the helper sets ScanSockets tries, most first: a
// kernel that refuses a helper refuses the program, and the next one does
// without it (the cookie helper is newer than bpf_sock_from_file).
var scanCandidates = []ScanFeatures{
	{CookieHelper: true, SockFromFile: true},
	{CookieHelper: false, SockFromFile: true},
	{CookieHelper: false, SockFromFile: false},
}

func scanSockets(candidates []ScanFeatures) ([]ScanSocket, ScanFeatures, error) {
	if err := raiseMemlock(); err != nil {
		return nil, ScanFeatures{}, err
	}
	prog, feat, err := loadScanProgram(candidates)
	if err != nil {
		return nil, feat, err
	}
	defer prog.Close()
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return nil, feat, fmt.Errorf("attach %s: %w", ScanFeature, wrapPermission(err))
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return nil, feat, fmt.Errorf("open %s: %w", ScanFeature, wrapPermission(err))
	}
	defer rd.Close()
	socks, err := readScan(bufio.NewReaderSize(rd, 64<<10))
	return socks, feat, err
}

// loadScanProgram loads the iterator with the first of candidates that this
// kernel allows: a helper the kernel refuses fails the load, and a
// load-time constant turns the code that calls it off.
func loadScanProgram(candidates []ScanFeatures) (*ebpf.Program, ScanFeatures, error) {
	spec, err := loadScan()
	if err != nil {
		return nil, ScanFeatures{}, fmt.Errorf("parse scan object: %w", err)
	}
	for _, feat := range candidates {
		s := spec.Copy()
		if err := errors.Join(
			s.Variables["use_cookie_helper"].Set(boolU32(feat.CookieHelper)),
			s.Variables["use_sock_from_file"].Set(boolU32(feat.SockFromFile)),
		); err != nil {
			return nil, feat, fmt.Errorf("set scan constants: %w", err)
		}
		// The program alone, not bpf2go's scanObjects: its variables
		// would map the object's .rodata and .bss into the process until
		// Go's garbage collector unmapped them (loader.go, objects).
		var objs struct {
			ScanSockets *ebpf.Program `ebpf:"scan_sockets"`
		}
		if err = s.LoadAndAssign(&objs, nil); err == nil {
			return objs.ScanSockets, feat, nil
		}
		var ve *ebpf.VerifierError
		if !errors.As(err, &ve) {
			break // not a helper the verifier refused: fewer helpers will not help
		}
	}
	return nil, ScanFeatures{}, fmt.Errorf("load %s: %w", ScanFeature, loadError(err))
}

func boolU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// readScan decodes the iterator's output, an array of struct scan_record.
func readScan(rd io.Reader) ([]ScanSocket, error) {
	var out []ScanSocket
	var r scanScanRecord
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&r)), scanRecordSize)
	for {
		if _, err := io.ReadFull(rd, buf); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, fmt.Errorf("read %s: %w", ScanFeature, err)
		}
		s, err := r.decode()
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
}

func (r *scanScanRecord) decode() (ScanSocket, error) {
	local, remote, err := addrs(r.Family, r.Saddr[:], r.Daddr[:])
	if err != nil {
		return ScanSocket{}, fmt.Errorf("scan record: %w", err)
	}
	s := ScanSocket{
		Cookie: r.Cookie, Inode: r.Ino, Netns: r.Netns, PID: r.Pid,
		Executable:   string(cBytes(r.Exe[:])),
		State:        r.State,
		Local:        netip.AddrPortFrom(local, r.Sport),
		Remote:       netip.AddrPortFrom(remote, r.Dport),
		IPv6Only:     r.Flags&uint32(scanScanFlagsSCAN_F_V6ONLY) != 0,
		Backlog:      r.MaxAckBacklog,
		MPTCPSubflow: r.Flags&uint32(scanScanFlagsSCAN_F_MPTCP_SUBFLOW) != 0,
	}
	if r.Flags&uint32(scanScanFlagsSCAN_F_BIND_BUCKET) != 0 {
		s.BindBucket = BindByBind
		if r.BindFastreuse == -1 {
			s.BindBucket = BindByConnect
		}
	}
	if r.Flags&uint32(scanScanFlagsSCAN_F_PORT_RANGE) != 0 {
		s.EphemeralPorts = PortRange{r.PortLow, r.PortHigh}
	}
	return s, nil
}
