//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/objaccess"
)

var (
	// ErrPermission means the process may not load or attach BPF programs.
	ErrPermission = errors.New("not permitted to load BPF programs: run as root or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON")
	// ErrUnsupportedKernel means the running kernel lacks a feature the
	// programs need.
	ErrUnsupportedKernel = errors.New("kernel lacks a required BPF feature")
	// ErrMemlock means the kernel charges BPF memory to RLIMIT_MEMLOCK
	// (before Linux 5.11, or a vendor kernel that kept that accounting) and
	// the process could not lift the limit.
	ErrMemlock = errors.New("this kernel charges BPF memory to RLIMIT_MEMLOCK, and the process may not raise it: " +
		"give it CAP_SYS_RESOURCE, or a memlock limit the BPF maps fit in (ulimit -l unlimited; " +
		"a container's is its runtime's, e.g. --ulimit memlock=-1)")
)

// DefaultRingBufferSize is the ring buffer size used when Options leaves it
// zero: room for about 45,000 connection-end records of 184 bytes.
const DefaultRingBufferSize = 8 << 20

// Options tune what Load creates.
type Options struct {
	// RingBufferSize in bytes: a power of two and a multiple of the page
	// size. Zero means DefaultRingBufferSize.
	RingBufferSize int
	// DNSPayloadLimit is the most bytes of a DNS message copied to user
	// space, up to MaxDNSPayload. Zero turns DNS capture off.
	DNSPayloadLimit int
	// TLSHelloLimit is the most bytes of a connection's start copied to
	// user space when it starts like a TLS ClientHello (tls.h), up to
	// MaxTLSHello. Zero turns TLS server names off.
	TLSHelloLimit int
	// IgnoreSelf: this process's sockets yield no records and no DNS
	// messages (the collector's own exports and lookups).
	IgnoreSelf bool
	// Without names optional programs (see Unavailable) not to load, as if
	// the kernel could not: tests use it to see what such a kernel gives.
	Without []string
	// WakeupBytes: a record wakes the reader each time the data waiting in
	// the ring buffer crosses a multiple of it (rounded down to a power of
	// two); the reader also looks at every tick. Zero means
	// DefaultWakeupBytes.
	WakeupBytes int
}

// DefaultWakeupBytes is the default Options.WakeupBytes: about 5,500
// connection-end records. Each wake-up costs the producing CPU an
// interrupt and the reader a wake-up of its goroutine and thread; under
// connection churn, 64 KiB cost the collector about a third more CPU per
// record than this, and the programs about 15 ns more per packet.
const DefaultWakeupBytes = 1 << 20

// MaxDNSPayload is the largest DNSPayloadLimit (DNS_PAYLOAD_MAX).
const MaxDNSPayload = 8192

// Objects are the loaded programs and maps, and the links that attach them.
type Objects struct {
	objs objects
	// The optional programs this kernel loaded (optionalPrograms), by name.
	optional map[string]*ebpf.Program
	// Features says what this kernel gives the programs.
	Features Features
	// Unavailable lists what this kernel cannot give, for one warning.
	Unavailable []Unavailable
	// SelfPID is this process's id as the kernel counts it, the one
	// records and the socket scan give: not os.Getpid() when the process
	// runs in a PID namespace of its own.
	SelfPID int
	links   []link.Link
}

// objects are the maps and the programs every kernel must load
// (LoadAndAssign loads only what the struct names).
type objects struct {
	netflowMaps
	Ingress    *ebpf.Program `ebpf:"netflow_ingress"`
	Egress     *ebpf.Program `ebpf:"netflow_egress"`
	SockCreate *ebpf.Program `ebpf:"netflow_sock_create"`
}

func (o *objects) Close() error {
	return errors.Join(o.netflowMaps.Close(), o.Ingress.Close(), o.Egress.Close(), o.SockCreate.Close())
}

// Unavailable is something this kernel cannot give.
type Unavailable struct {
	// Feature is the kernel feature that is missing.
	Feature string
	// Program is the optional program that did not load, if it is one
	// (several: comma-separated).
	Program string
	// Absent is what records lack without it.
	Absent string
	// Err is why the program did not load, if it is one.
	Err error
}

// testWithout is added to every Options.Without: this package's tests set
// it from NETFLOWTCPEND_TEST_WITHOUT (main_test.go), to run as on a kernel
// without those features.
var testWithout []string

// errWithout is why a program in Options.Without did not load.
var errWithout = errors.New("left out (Options.Without)")

// Optional programs: tracing programs that some kernels cannot load.
const (
	// StateProgram reports the ends without FIN or RST.
	StateProgram = "netflow_state"
	// AcceptProgram, SendProgram and RecvProgram name the owner of
	// accepted sockets: the first at the accept (fexit), the others,
	// where the kernel has no fexit, at the first send or read.
	AcceptProgram = "netflow_accept"
	SendProgram   = "netflow_send"
	RecvProgram   = "netflow_recv"
	// CgroupProgram reports new cgroups (RecordCgroup).
	CgroupProgram = "netflow_cgroup_mkdir"
)

// The kernel features the optional programs need, and what records lack
// without them.
const (
	stateFeature = "tp_btf programs with socket storage (Linux 5.11)"
	stateAbsent  = "records of connections that end without FIN or RST (timeouts, ICMP errors, connects given up)"
	ownerFeature = "fexit (BPF trampolines) on inet_csk_accept, or the tcp_sendmsg_locked (after Linux 6.12) and " +
		"tcp_rcv_space_adjust tracepoints, with socket storage (Linux 5.11)"
	ownerAbsent    = "the owner process of incoming connections"
	cgroupFeature  = "the cgroup_mkdir tracepoint (tp_btf)"
	cgroupAbsent   = "the container.id and cgroup path of containers created and removed between two walks of the cgroup tree"
	readOnlyAbsent = "the owner process of incoming connections that the process never reads from"
	sendOnlyAbsent = "the owner process of incoming connections that the process never sends on"
)

// Load checks the kernel, then loads the programs and maps into it. Nothing
// is attached yet.
func Load(opts Options) (*Objects, error) {
	// Before the probes, which create maps and programs too.
	if err := raiseMemlock(); err != nil {
		return nil, err
	}
	if err := checkKernel(); err != nil {
		return nil, err
	}

	opts.Without = slices.Concat(opts.Without, testWithout)
	o := &Objects{optional: map[string]*ebpf.Program{}}
	atomics, err := haveAtomics()
	if err != nil {
		return nil, err
	}
	o.Features.Atomics = atomics && !slices.Contains(opts.Without, WithoutAtomics)
	load := loadNetflowSpinlock
	if o.Features.Atomics {
		load = loadNetflow
	}
	spec, err := load()
	if err != nil {
		return nil, fmt.Errorf("parse bpf object: %w", err)
	}
	if err := probeHelpers(spec, opts.Without, &o.Features); err != nil {
		return nil, err
	}
	size := opts.RingBufferSize
	if size == 0 {
		size = DefaultRingBufferSize
	}
	spec.Maps["events"].MaxEntries = uint32(size)
	if opts.DNSPayloadLimit < 0 || opts.DNSPayloadLimit > MaxDNSPayload {
		return nil, fmt.Errorf("DNS payload limit %d is not within 0..%d", opts.DNSPayloadLimit, MaxDNSPayload)
	}
	if err := spec.Variables["dns_payload_limit"].Set(uint32(opts.DNSPayloadLimit)); err != nil {
		return nil, fmt.Errorf("set DNS payload limit: %w", err)
	}
	if opts.TLSHelloLimit < 0 || opts.TLSHelloLimit > MaxTLSHello {
		return nil, fmt.Errorf("TLS hello limit %d is not within 0..%d", opts.TLSHelloLimit, MaxTLSHello)
	}
	if err := spec.Variables["tls_hello_limit"].Set(uint32(opts.TLSHelloLimit)); err != nil {
		return nil, fmt.Errorf("set TLS hello limit: %w", err)
	}
	who, err := whoami(spec)
	if err != nil {
		return nil, err
	}
	o.SelfPID, o.Features.DNSNetns = who.pid, who.netns != 0
	if opts.IgnoreSelf {
		if err := spec.Variables["self_tgid"].Set(uint32(o.SelfPID)); err != nil {
			return nil, fmt.Errorf("set own process id: %w", err)
		}
	}
	wakeup := opts.WakeupBytes
	if wakeup == 0 {
		wakeup = DefaultWakeupBytes
	}
	// A quarter of the ring at most: the reader must hear of data long
	// before the ring is full.
	wakeup = min(wakeup, size/4)
	if err := spec.Variables["wakeup_shift"].Set(uint32(bits.Len(uint(wakeup)) - 1)); err != nil {
		return nil, fmt.Errorf("set wakeup threshold: %w", err)
	}

	// Each LoadAndAssign below would read the kernel's BTF again.
	cache := btf.NewCache()
	if err := spec.LoadAndAssign(&o.objs, &ebpf.CollectionOptions{Cache: cache}); err != nil {
		return nil, loadError(err)
	}
	// The optional programs share the maps loaded above: socket state, the
	// ring buffer, the counters.
	shared := &ebpf.CollectionOptions{Cache: cache, MapReplacements: map[string]*ebpf.Map{
		"sock_states": o.objs.SockStates, "events": o.objs.Events, "stats": o.objs.Stats,
		"settled_socks": o.objs.SettledSocks,
	}}
	optional := func(name string) error {
		if slices.Contains(opts.Without, name) {
			return errWithout
		}
		p, err := loadProgram(spec, name, shared)
		if err != nil {
			return err
		}
		o.optional[name] = p
		return nil
	}
	o.Unavailable = o.Features.unavailable()

	if err := optional(StateProgram); err != nil {
		o.Unavailable = append(o.Unavailable, Unavailable{Feature: stateFeature, Program: StateProgram, Absent: stateAbsent, Err: err})
	} else {
		o.Features.EndsWithoutFINOrRST = true
	}

	// The owner of accepted sockets: once per socket at the accept where
	// the kernel allows fexit, else at every send and read.
	acceptErr := optional(AcceptProgram)
	if acceptErr == nil {
		if acceptErr = probeAttach(o.optional[AcceptProgram]); acceptErr != nil {
			o.optional[AcceptProgram].Close()
			delete(o.optional, AcceptProgram)
		}
	}
	o.Features.OwnerOfAccepted = OwnerAtAccept
	if acceptErr != nil {
		// The tracepoints remember the sockets they are done with where
		// netflow_state tells them when a socket closes.
		if err := spec.Variables["settled_cache"].Set(boolU32(o.Features.EndsWithoutFINOrRST)); err != nil {
			return nil, fmt.Errorf("set settled_cache: %w", err)
		}
		sendErr, recvErr := optional(SendProgram), optional(RecvProgram)
		switch {
		case sendErr == nil && recvErr == nil:
			o.Features.OwnerOfAccepted = OwnerAtFirstIO
		case recvErr == nil:
			o.Features.OwnerOfAccepted = OwnerAtFirstRead
			o.Unavailable = append(o.Unavailable, Unavailable{Feature: ownerFeature, Program: SendProgram,
				Absent: readOnlyAbsent, Err: errors.Join(acceptErr, sendErr)})
		case sendErr == nil:
			o.Features.OwnerOfAccepted = OwnerAtFirstSend
			o.Unavailable = append(o.Unavailable, Unavailable{Feature: ownerFeature, Program: RecvProgram,
				Absent: sendOnlyAbsent, Err: errors.Join(acceptErr, recvErr)})
		default:
			o.Features.OwnerOfAccepted = OwnerUnknown
			o.Unavailable = append(o.Unavailable, Unavailable{Feature: ownerFeature,
				Program: strings.Join([]string{AcceptProgram, SendProgram, RecvProgram}, ", "),
				Absent:  ownerAbsent, Err: errors.Join(acceptErr, sendErr, recvErr)})
		}
	}

	if err := optional(CgroupProgram); err != nil {
		o.Unavailable = append(o.Unavailable, Unavailable{Feature: cgroupFeature, Program: CgroupProgram, Absent: cgroupAbsent, Err: err})
	} else {
		o.Features.CgroupCreation = true
	}
	return o, nil
}

// probeAttach attaches a tracing program and detaches it at once: a kernel
// may load fexit programs and still refuse to attach them.
func probeAttach(p *ebpf.Program) error {
	l, err := link.AttachTracing(link.TracingOptions{Program: p})
	if err != nil {
		return fmt.Errorf("attach: %w", wrapPermission(err))
	}
	return l.Close()
}

// whoamiResult is what netflow_whoami saw.
type whoamiResult struct {
	pid   int    // this process's id, as the kernel counts it
	netns uint32 // the network namespace DNS records read; 0: none
}

// whoami runs netflow_whoami and netflow_netns_probe once each with
// BPF_PROG_TEST_RUN (netflow.c): it learns this process's id as the kernel
// counts it, and whether DNS records can carry a socket's network
// namespace.
func whoami(spec *ebpf.CollectionSpec) (whoamiResult, error) {
	var o struct {
		PID   *ebpf.Program  `ebpf:"netflow_whoami"`
		Netns *ebpf.Program  `ebpf:"netflow_netns_probe"`
		TGID  *ebpf.Variable `ebpf:"whoami_tgid"`
		Inum  *ebpf.Variable `ebpf:"whoami_netns"`
	}
	if err := spec.LoadAndAssign(&o, nil); err != nil {
		return whoamiResult{}, fmt.Errorf("find own process id: %w", loadError(err))
	}
	defer o.PID.Close()
	defer o.Netns.Close()
	if _, err := o.PID.Run(&ebpf.RunOptions{}); err != nil {
		return whoamiResult{}, fmt.Errorf("find own process id: %w", wrapPermission(err))
	}
	if _, err := o.Netns.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
		return whoamiResult{}, fmt.Errorf("probe for network namespaces: %w", wrapPermission(err))
	}
	var tgid, netns uint32
	if err := errors.Join(o.TGID.Get(&tgid), o.Inum.Get(&netns)); err != nil {
		return whoamiResult{}, fmt.Errorf("find own process id: %w", err)
	}
	return whoamiResult{pid: int(tgid), netns: netns}, nil
}

// loadProgram loads one of the optional programs of spec. LoadAndAssign
// loads only what the struct names (and the maps that uses, unless opts
// replaces them), not a second ring buffer.
func loadProgram(spec *ebpf.CollectionSpec, name string, opts *ebpf.CollectionOptions) (*ebpf.Program, error) {
	if spec.Programs[name] == nil {
		return nil, fmt.Errorf("no program %s", name)
	}
	// struct { P *ebpf.Program `ebpf:"<name>"` }
	t := reflect.StructOf([]reflect.StructField{{
		Name: "P", Type: reflect.TypeFor[*ebpf.Program](), Tag: reflect.StructTag(`ebpf:"` + name + `"`),
	}})
	v := reflect.New(t)
	if err := spec.LoadAndAssign(v.Interface(), opts); err != nil {
		return nil, err
	}
	return v.Elem().Field(0).Interface().(*ebpf.Program), nil
}

func loadError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		// The last lines of the log say why.
		//nolint:errorlint // %+v prints the verifier's whole log; callers test for ErrUnsupportedKernel
		return fmt.Errorf("load bpf objects: %w (verifier: %+v)", ErrUnsupportedKernel, ve)
	}
	return fmt.Errorf("load bpf objects: %w", wrapPermission(err))
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

// removeMemlock lifts RLIMIT_MEMLOCK where the kernel charges BPF memory to
// it, and does nothing on kernels that charge the memory cgroup (5.11 and
// later); a variable for tests.
var removeMemlock = rlimit.RemoveMemlock

// memlockLimit is, when the kernel charges BPF memory to RLIMIT_MEMLOCK and
// the limit could not be lifted, the limit in bytes (then raised to its hard
// limit); 0 otherwise. wrapPermission blames it for a refusal that missing
// capabilities do not explain.
var memlockLimit atomic.Uint64

// raiseMemlock lets the kernel charge BPF memory to this process on kernels
// that count it against RLIMIT_MEMLOCK. Lifting the limit past its hard
// limit needs CAP_SYS_RESOURCE; without it, the soft limit goes up to the
// hard one, which the runtime may have set high enough, and loading goes
// on: if the maps do not fit, the error says so (ErrMemlock).
func raiseMemlock() error {
	err := removeMemlock()
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("raise memlock limit: %w", err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return fmt.Errorf("read memlock limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim) // lowering nothing, never refused
	}
	memlockLimit.Store(max(lim.Cur, 1))
	return nil
}

// effectiveCaps returns the effective capability set of the calling thread.
func effectiveCaps() (uint64, bool) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, false
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, true
}

// hasPerfmon reports whether the process has CAP_PERFMON or CAP_SYS_ADMIN,
// which also grants it.
func hasPerfmon() bool {
	eff, ok := effectiveCaps()
	if !ok {
		return true // cannot tell: do not blame permissions
	}
	return eff&(1<<unix.CAP_PERFMON|1<<unix.CAP_SYS_ADMIN) != 0
}

// neededCaps are the capabilities the collector needs (README, "Capabilities").
var neededCaps = []struct {
	bit  uint
	name string
}{{unix.CAP_BPF, "CAP_BPF"}, {unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_PERFMON, "CAP_PERFMON"}}

// missingCaps names the needed capabilities that the effective set lacks.
// CAP_SYS_ADMIN stands for all three, as the kernel counts it
// (bpf_capable, bpf_net_capable, perfmon_capable).
func missingCaps() []string {
	eff, ok := effectiveCaps()
	if !ok || eff&(1<<unix.CAP_SYS_ADMIN) != 0 {
		return nil
	}
	var out []string
	for _, c := range neededCaps {
		if eff&(1<<c.bit) == 0 {
			out = append(out, c.name)
		}
	}
	return out
}

// memlockHint is what cilium/ebpf adds to every EPERM from loading a
// program or creating a map. Here it only misleads: raiseMemlock lifted the
// limit, or wrapPermission blames it itself (ErrMemlock).
const memlockHint = " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)"

// withoutMemlockHint is an error without memlockHint in its text.
type withoutMemlockHint struct{ error }

func (e withoutMemlockHint) Error() string {
	return strings.ReplaceAll(e.error.Error(), memlockHint, "")
}
func (e withoutMemlockHint) Unwrap() error { return e.error }

// wrapPermission says why the kernel refused: the capabilities that are
// missing, or else a memlock limit that could not be lifted.
func wrapPermission(err error) error {
	if !errors.Is(err, os.ErrPermission) {
		return err
	}
	err = withoutMemlockHint{err}
	if missing := missingCaps(); len(missing) > 0 {
		return fmt.Errorf("%w (missing %s): %w", ErrPermission, strings.Join(missing, ", "), err)
	}
	if limit := memlockLimit.Load(); limit != 0 {
		return fmt.Errorf("%w (limit now %d KiB): %w", ErrMemlock, limit/1024, err)
	}
	return fmt.Errorf("%w: %w", ErrPermission, err)
}

// Attach attaches the cgroup programs (cgroup_skb ingress and egress,
// sock_create) to the cgroup v2 directory at cgroupPath, so that only
// sockets created in that cgroup or below it are watched, and the tracepoint
// programs: those on sockets act only on sockets that the cgroup programs
// gave state; the one on cgroup creation reports every new cgroup v2
// directory of the host, from now on (a walk of the tree after Attach finds
// the older ones).
func (o *Objects) Attach(cgroupPath string) error {
	for _, a := range []struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
		name string
	}{
		{o.objs.Ingress, ebpf.AttachCGroupInetIngress, "ingress"},
		{o.objs.Egress, ebpf.AttachCGroupInetEgress, "egress"},
		{o.objs.SockCreate, ebpf.AttachCGroupInetSockCreate, "sock_create"},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: a.typ, Program: a.prog})
		if err != nil {
			o.Detach()
			return fmt.Errorf("attach %s to %s: %w", a.name, cgroupPath, wrapPermission(err))
		}
		o.links = append(o.links, l)
	}
	for _, name := range slices.Sorted(maps.Keys(o.optional)) {
		p := o.optional[name]
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			o.Detach()
			return fmt.Errorf("attach tracepoint program %s: %w", p, wrapPermission(err))
		}
		o.links = append(o.links, l)
	}
	return nil
}

// Detach removes the programs from the cgroup; records already in the ring
// buffer stay readable.
func (o *Objects) Detach() {
	for _, l := range o.links {
		_ = l.Close()
	}
	o.links = nil
}

// Close detaches the programs and frees the maps.
func (o *Objects) Close() error {
	o.Detach()
	errs := []error{o.objs.Close()}
	for _, p := range o.optional {
		errs = append(errs, p.Close())
	}
	o.optional = nil
	return errors.Join(errs...)
}

// NewReader returns a reader of the records in the ring buffer.
func (o *Objects) NewReader() (*ringbuf.Reader, error) {
	rd, err := ringbuf.NewReader(o.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return rd, nil
}

func init() {
	objaccess.Of = func(objects any) objaccess.Handles {
		o := objects.(*Objects)
		return objaccess.Handles{Ingress: o.objs.Ingress, Egress: o.objs.Egress, Events: o.objs.Events}
	}
}
