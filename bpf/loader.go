//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

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
	// state_tracepoint, set once the optional programs are loaded
	// (maps.h). Globals are reached as maps, never as *ebpf.Variable: a
	// variable maps its whole section into the process until Go's garbage
	// collector unmaps it, and the kernel keeps the map until then, after
	// Close.
	StateTracepoint *ebpf.Map `ebpf:".data.state"`
	// The TLS slots and their armed bytes, among other globals (maps.h):
	// only the tests of tls.h read it.
	BSS *ebpf.Map `ebpf:".bss"`
}

func (o *objects) Close() error {
	return errors.Join(o.netflowMaps.Close(), o.Ingress.Close(), o.Egress.Close(), o.SockCreate.Close(),
		o.StateTracepoint.Close(), o.BSS.Close())
}

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
	// The TLS programs are the largest, and the ones an old verifier may
	// refuse (tls.h): if the programs do not load with them, they load
	// without, and records lack the server names.
	withTLS := !slices.Contains(opts.Without, WithoutTLS)
	spec, cache, err := o.loadMain(load, opts, withTLS)
	tlsErr := errWithout
	if withTLS {
		tlsErr = err
		if err != nil {
			spec, cache, err = o.loadMain(load, opts, false)
		}
	}
	if err != nil {
		return nil, err
	}
	// The optional programs share the maps loaded above: socket state (in
	// storage and in the table, which netflow_state uses once
	// state_tracepoint says it runs) and translations, the ring buffer,
	// the counters.
	shared := &ebpf.CollectionOptions{Cache: cache, MapReplacements: map[string]*ebpf.Map{
		"sock_states": o.objs.SockStates, "conn_slots": o.objs.ConnSlots,
		".data.state": o.objs.StateTracepoint, "translations": o.objs.Translations,
		"events": o.objs.Events, "stats": o.objs.Stats, "settled_socks": o.objs.SettledSocks,
	}}
	o.Unavailable = o.Features.unavailable()
	if !o.Features.TLSServerNames {
		o.Unavailable = append(o.Unavailable, Unavailable{Feature: tlsFeature, Program: tlsPrograms,
			Absent: tlsAbsent, Err: tlsErr})
	}
	if err := o.loadOptional(spec, opts, shared); err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

// refuseTLS, set by tests, makes the TLS programs ones the verifier
// refuses, as an old kernel's might.
var refuseTLS func(*ebpf.CollectionSpec)

// tlsProgramArrays are the maps that hold the TLS programs (tls.h), which
// the cgroup_skb programs tail-call.
var tlsProgramArrays = []string{"tls_ingress_progs", "tls_egress_progs"}

// loadMain loads the object that load parses, with the TLS programs or
// without them: the cgroup_skb programs, sock_create and the maps, into
// o.objs. It returns the object's spec, its constants set, for the
// programs loaded later, and the cache of the kernel's BTF.
func (o *Objects) loadMain(load func() (*ebpf.CollectionSpec, error), opts Options, withTLS bool) (*ebpf.CollectionSpec, *btf.Cache, error) {
	spec, err := load()
	if err != nil {
		return nil, nil, fmt.Errorf("parse bpf object: %w", err)
	}
	if err := probeHelpers(spec, opts.Without, &o.Features); err != nil {
		return nil, nil, err
	}
	o.Features.TLSServerNames = withTLS
	if withTLS && refuseTLS != nil {
		refuseTLS(spec)
	}
	if !withTLS {
		// Empty arrays: the tail calls fall through, and with
		// tls_hello_limit 0 the verifier drops the code that makes them.
		for _, name := range tlsProgramArrays {
			spec.Maps[name].Contents = nil
		}
	}
	size, err := o.setConstants(spec, opts)
	if err != nil {
		return nil, nil, err
	}
	spec.Maps["events"].MaxEntries = uint32(size)

	// Each LoadAndAssign below would read the kernel's BTF again.
	cache := btf.NewCache()
	// The TLS programs load with the maps that hold them.
	if err := spec.LoadAndAssign(&o.objs, &ebpf.CollectionOptions{Cache: cache}); err != nil {
		return nil, nil, loadError(err)
	}
	return spec, cache, nil
}

// setConstants sets the load-time constants of spec (maps.h) from opts and
// from what whoami finds; it returns the ring buffer's size.
func (o *Objects) setConstants(spec *ebpf.CollectionSpec, opts Options) (int, error) {
	size := opts.RingBufferSize
	if size == 0 {
		size = DefaultRingBufferSize
	}
	if opts.DNSPayloadLimit < 0 || opts.DNSPayloadLimit > MaxDNSPayload {
		return 0, fmt.Errorf("DNS payload limit %d is not within 0..%d", opts.DNSPayloadLimit, MaxDNSPayload)
	}
	if err := spec.Variables["dns_payload_limit"].Set(uint32(opts.DNSPayloadLimit)); err != nil {
		return 0, fmt.Errorf("set DNS payload limit: %w", err)
	}
	if opts.TLSHelloLimit < 0 || opts.TLSHelloLimit > MaxTLSHello {
		return 0, fmt.Errorf("TLS hello limit %d is not within 0..%d", opts.TLSHelloLimit, MaxTLSHello)
	}
	if !o.Features.TLSServerNames {
		opts.TLSHelloLimit = 0
	}
	if err := spec.Variables["tls_hello_limit"].Set(uint32(opts.TLSHelloLimit)); err != nil {
		return 0, fmt.Errorf("set TLS hello limit: %w", err)
	}
	who, err := whoami(spec)
	if err != nil {
		return 0, err
	}
	o.SelfPID, o.Features.DNSNetns = who.pid, who.netns != 0
	if opts.IgnoreSelf {
		if err := spec.Variables["self_tgid"].Set(uint32(o.SelfPID)); err != nil {
			return 0, fmt.Errorf("set own process id: %w", err)
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
		return 0, fmt.Errorf("set wakeup threshold: %w", err)
	}
	return size, nil
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
		PID    *ebpf.Program `ebpf:"netflow_whoami"`
		Netns  *ebpf.Program `ebpf:"netflow_netns_probe"`
		Whoami *ebpf.Map     `ebpf:".data.whoami"` // struct whoami (maps.h)
	}
	if err := spec.LoadAndAssign(&o, nil); err != nil {
		return whoamiResult{}, fmt.Errorf("find own process id: %w", loadError(err))
	}
	defer o.PID.Close()
	defer o.Netns.Close()
	defer o.Whoami.Close()
	if _, err := o.PID.Run(&ebpf.RunOptions{}); err != nil {
		return whoamiResult{}, fmt.Errorf("find own process id: %w", wrapPermission(err))
	}
	if _, err := o.Netns.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
		return whoamiResult{}, fmt.Errorf("probe for network namespaces: %w", wrapPermission(err))
	}
	var who struct{ TGID, Netns uint32 }
	if err := o.Whoami.Lookup(uint32(0), &who); err != nil {
		return whoamiResult{}, fmt.Errorf("find own process id: %w", err)
	}
	return whoamiResult{pid: int(who.TGID), netns: who.Netns}, nil
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
	// Empty the TLS program arrays first, so the TLS programs go with the
	// descriptors here rather than in the clearing the kernel defers to a
	// work queue when an array's last user reference goes. (While that is
	// pending, a tool that opens the array by id and closes it again makes
	// the kernel clear it twice, and 6.18 then never frees the array:
	// internal/testutils/bpfids looks for maps without opening them.)
	for _, m := range []*ebpf.Map{o.objs.TlsIngressProgs, o.objs.TlsEgressProgs} {
		if m != nil {
			_ = m.Delete(uint32(0))
		}
	}
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
