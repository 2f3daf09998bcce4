//go:build linux

// Package receiver is the runtime of the netflowtcpend receiver: it loads and
// attaches the kernel programs, reads their records, turns them into log
// records and passes them on in batches.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/conntrack"
	"github.com/netflowtcpend/netflowtcpend/internal/dnscache"
	"github.com/netflowtcpend/netflowtcpend/internal/kubecache"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	"github.com/netflowtcpend/netflowtcpend/internal/sockscan"
)

// dnsQueryTimeout is how long a query waits for its answer: resolvers give
// up after about 5 s per attempt.
const dnsQueryTimeout = 15 * time.Second

// Consumers are the next consumers of the pipelines the receiver is in: a
// logs pipeline, a metrics pipeline, or both (one receiver serves both);
// nil for a pipeline it is not in.
type Consumers struct {
	Logs    consumer.Logs
	Metrics consumer.Metrics
}

// Receiver watches TCP connection ends in a cgroup. It implements
// receiver.Logs and receiver.Metrics.
type Receiver struct {
	cfg       *Config // validated; never changed
	logger    *zap.Logger
	telemetry *metadata.TelemetryBuilder
	obsrecv   *receiverhelper.ObsReport
	next      Consumers
	dns       *dnscache.Cache  // nil when DNS is off
	k8s       *kubecache.Cache // nil when the kubernetes: block is off or cannot be used
	hostName  string
	opts      options

	mu         sync.Mutex // guards the fields below across Start and Shutdown
	cgroupPath string     // what the programs are attached to
	cgroups    *cgroupv2.Paths
	objs       *bpf.Objects
	nat        *natLookup // nil unless nat.conntrack
	reader     *ringbuf.Reader
	done       chan struct{} // closed when the read loop has returned
	cancel     context.CancelFunc
	stopped    bool
}

// options are what the receiver takes from its surroundings besides the
// configuration; tests give other ones to newReceiver.
type options struct {
	// rewalk is how often the cgroup tree may be walked again.
	rewalk time.Duration
	// without names optional programs and kernel features not to use, as
	// if the kernel lacked them (bpf.Options.Without).
	without []string
	// scan reads the sockets open before start.
	scan func(self int) (*sockscan.Table, error)
	// ownPID is this process's id in its PID namespace.
	ownPID func() int
	// openConntrack opens the connection tracking that nat.conntrack asks
	// (the node's: this process's network namespace) and returns its
	// namespace's inode.
	openConntrack func() (*conntrack.Conn, uint32, error)
	// shutdownGrace bounds Shutdown when its context has no deadline.
	shutdownGrace time.Duration
}

// shutdownGrace is how long Shutdown waits for the next consumers to take
// what is left when its context has no deadline, as a collector stopping on
// SIGTERM gives none: a logs pipeline that keeps refusing would otherwise
// hold the collector forever. Then what is left is dropped and counted
// (records_dropped). Under Kubernetes' default grace period of 30 s.
const shutdownGrace = 10 * time.Second

func defaultOptions() options {
	return options{rewalk: time.Second, scan: sockscan.Scan, ownPID: os.Getpid, shutdownGrace: shutdownGrace,
		openConntrack: openConntrack}
}

// New creates a receiver with a validated configuration; nothing touches
// the kernel before Start.
func New(cfg *Config, tel component.TelemetrySettings, obsrecv *receiverhelper.ObsReport, next Consumers) (*Receiver, error) {
	return newReceiver(cfg, tel, obsrecv, next, defaultOptions())
}

func newReceiver(cfg *Config, tel component.TelemetrySettings, obsrecv *receiverhelper.ObsReport, next Consumers, opts options) (*Receiver, error) {
	tb, err := metadata.NewTelemetryBuilder(tel)
	if err != nil {
		return nil, fmt.Errorf("create telemetry: %w", err)
	}
	r := &Receiver{cfg: cfg, logger: tel.Logger, telemetry: tb, obsrecv: obsrecv, next: next, opts: opts}
	r.hostName, _ = os.Hostname()
	if cfg.DNS.Enabled {
		r.dns = dnscache.New(dnscache.Config{
			MaxAddresses: cfg.DNS.MaxAddresses,
			MaxNames:     cfg.DNS.MaxNames,
			MinTTL:       cfg.DNS.MinTTL,
			QueryTimeout: dnsQueryTimeout,
		})
	}
	return r, nil
}

// Start loads the kernel programs, attaches them to the cgroup and starts
// reading. Every error says what to fix.
func (r *Receiver) Start(_ context.Context, _ component.Host) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.objs != nil {
		return errors.New("receiver already started")
	}

	path := r.cfg.CgroupPath
	if path != "" {
		// Validated, but the cgroup may have gone since.
		if err := cgroupPathError(path); err != nil {
			return err
		}
	}
	root, err := cgroupv2.Root()
	if err != nil {
		return fmt.Errorf("find the cgroup v2 root: %w", err)
	}
	if path == "" {
		path = root
	}
	r.cgroupPath = path
	r.cgroups = cgroupv2.NewPaths(root, r.opts.rewalk)

	opts := bpf.Options{RingBufferSize: r.cfg.RingBufferSize, Without: r.opts.without, IgnoreSelf: r.cfg.Filters.ExcludeSelf}
	if r.dns != nil {
		opts.DNSPayloadLimit = r.cfg.DNS.PayloadLimit
	}
	var nat *natLookup
	if r.cfg.NAT.Conntrack {
		if nat, err = newNATLookup(r.opts.openConntrack, r.logger); err != nil {
			return err
		}
	}
	if r.cfg.TLS.Enabled {
		opts.TLSHelloLimit = bpf.MaxTLSHello
	}
	objs, err := bpf.Load(opts)
	if err != nil {
		_ = nat.close()
		return err
	}
	r.logFeatures(objs)
	if pid := r.opts.ownPID(); objs.SelfPID != pid {
		// The scan at start sees the tasks of this PID namespace only.
		r.logger.Warn("The collector runs in a PID namespace of its own: connections open before start "+
			"of processes outside it have direction unknown and no owner; run it in the host PID namespace "+
			"(hostPID: true in Kubernetes)",
			zap.Int("pid", pid), zap.Int("kernel_pid", objs.SelfPID))
	}
	rd, err := objs.NewReader()
	if err != nil {
		_ = nat.close()
		objs.Close()
		return err
	}
	if err := r.registerGauges(rd); err != nil {
		r.telemetry.Shutdown()
		_ = nat.close()
		rd.Close()
		objs.Close()
		return fmt.Errorf("register telemetry: %w", err)
	}
	if err := objs.Attach(path); err != nil {
		r.telemetry.Shutdown() // the gauge reads rd, which is going
		_ = nat.close()
		rd.Close()
		objs.Close()
		if cerr := cgroupPathError(path); cerr != nil {
			return cerr // gone while loading
		}
		return err
	}

	// After attaching: a socket is either in the table now or its
	// handshake is seen; a cgroup is either in the tree now or reported
	// at its creation.
	preexisting := r.scanSockets(objs.SelfPID)
	r.cgroups.Walk()
	r.k8s = startK8sNames(r.cfg, r.logger)

	ctx, cancel := context.WithCancel(context.Background())
	r.objs, r.reader, r.cancel, r.nat = objs, rd, cancel, nat
	r.done = make(chan struct{})
	loop := newReadLoop(r.loopSettings(root, kernelSide{
		reader: rd, counters: objs, selfPID: objs.SelfPID, dnsNetns: objs.Features.DNSNetns, preexisting: preexisting,
	}))
	go func() {
		defer close(r.done)
		loop.run(ctx)
	}()
	r.logger.Info("Watching TCP connection ends",
		zap.String("cgroup_path", path),
		zap.String("cgroup_root", root),
		zap.Int("ring_buffer_size", rd.BufferSize()))
	return nil
}

// logFeatures says what the kernel gives the programs, and warns once of
// what it cannot give, naming each missing kernel feature and what records
// lack without it.
func (r *Receiver) logFeatures(objs *bpf.Objects) {
	f := objs.Features
	r.logger.Info("Loaded the kernel programs",
		zap.Bool("atomics", f.Atomics),
		zap.Bool("dns_netns", f.DNSNetns),
		zap.Bool("ends_without_fin_or_rst", f.EndsWithoutFINOrRST),
		zap.String("owner_of_accepted", string(f.OwnerOfAccepted)),
		zap.Bool("owner_executable", f.OwnerExecutable),
		zap.Bool("owner_at_connect", f.OwnerAtConnect),
		zap.Bool("mptcp_owner", f.MPTCPOwner),
		zap.Bool("cgroup_creation", f.CgroupCreation))
	if len(objs.Unavailable) == 0 {
		return
	}
	var missing, absent, programs []string
	var errs []error
	for _, u := range objs.Unavailable {
		missing = append(missing, u.Feature)
		absent = append(absent, u.Absent)
		if u.Program != "" {
			programs = append(programs, u.Program)
		}
		if u.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u.Program, u.Err))
		}
	}
	r.logger.Warn("This kernel lacks BPF features that the receiver uses; records lack what they give",
		zap.Strings("missing", missing), zap.Strings("absent", absent),
		zap.Strings("programs", programs), zap.Errors("errors", errs))
}

// scanSockets reads the sockets that were open before the programs were
// attached: their direction and owner. Records that arrive meanwhile wait in
// the ring buffer. A kernel that cannot run the scan costs one warning:
// those records then have direction unknown and no process.
func (r *Receiver) scanSockets(self int) *sockscan.Table {
	start := time.Now()
	socks, err := r.opts.scan(self)
	if err != nil {
		r.logger.Warn("This kernel cannot scan the sockets open before start; their records have direction unknown and no process",
			zap.String("missing", bpf.ScanFeature), zap.Error(err))
		return socks
	}
	fields := []zap.Field{
		zap.Int("sockets", socks.Len()),
		zap.Duration("took", time.Since(start)),
		zap.Bool("cookie_helper", socks.Features.CookieHelper),
		zap.Bool("sock_from_file", socks.Features.SockFromFile),
	}
	for rule, n := range socks.Rules {
		fields = append(fields, zap.Int("rule_"+sockscan.Rule(rule).String(), n))
	}
	r.logger.Debug("Read the sockets open before start", fields...)
	return socks
}

// kernelSide is what the read loop takes from the loaded programs.
type kernelSide struct {
	reader   *ringbuf.Reader
	counters kernelCounters // the programs' counters: the *bpf.Objects
	selfPID  int            // bpf.Objects.SelfPID
	dnsNetns bool           // bpf.Features.DNSNetns
	// The sockets open before start (scanSockets).
	preexisting *sockscan.Table
}

// loopSettings gives the read loop what it uses, from the configuration,
// what New and Start made (root: the cgroup v2 mount point), and k.
func (r *Receiver) loopSettings(root string, k kernelSide) readLoopSettings {
	s := readLoopSettings{
		logger: r.logger, telemetry: r.telemetry, reader: k.reader, counters: k.counters,
		flushInterval: r.cfg.FlushInterval,
		enrich: enricherSettings{
			logger: r.logger, telemetry: r.telemetry,
			preexisting: k.preexisting, excludeSelf: r.cfg.Filters.ExcludeSelf, selfPID: k.selfPID,
			filters: newFilters(r.cfg.Filters, root), cgroups: r.cgroups,
			dns: r.dns, dnsNetns: k.dnsNetns, nat: r.nat, tls: r.cfg.TLS.Enabled,
		},
		logs: logsSinkSettings{
			hostName: r.hostName, maxBatchSize: r.cfg.MaxBatchSize, attrs: r.cfg.Attributes.set(),
			k8s:     r.k8s != nil,
			obsrecv: r.obsrecv, next: r.next.Logs,
		},
		metrics: metricsSinkSettings{
			logger: r.logger, cfg: r.cfg.Metrics, hostName: r.hostName,
			obsrecv: r.obsrecv, next: r.next.Metrics, k8s: r.k8s != nil,
		},
	}
	if r.k8s != nil { // a nil *Cache in the interface would not be nil
		s.enrich.k8s = r.k8s
	}
	return s
}

// registerGauges registers the callbacks of the asynchronous metrics.
func (r *Receiver) registerGauges(rd *ringbuf.Reader) error {
	observe := func(f func() int64) metric.Int64Callback {
		return func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(f())
			return nil
		}
	}
	err := r.telemetry.RegisterNetflowtcpendRingBufferPendingCallback(
		observe(func() int64 { return int64(rd.AvailableBytes()) }))
	if r.dns == nil {
		return err
	}
	stat := func(f func(dnscache.Stats) uint64) metric.Int64Callback {
		return observe(func() int64 { return int64(f(r.dns.Stats())) })
	}
	return errors.Join(err,
		r.telemetry.RegisterNetflowtcpendDNSCacheAddressesCallback(observe(func() int64 { return int64(r.dns.Len()) })),
		r.telemetry.RegisterNetflowtcpendDNSCacheEvictionsCallback(stat(func(s dnscache.Stats) uint64 { return s.Evictions })),
		r.telemetry.RegisterNetflowtcpendDNSCacheHitsCallback(stat(func(s dnscache.Stats) uint64 { return s.Hits })),
		r.telemetry.RegisterNetflowtcpendDNSCacheMissesCallback(stat(func(s dnscache.Stats) uint64 { return s.Misses })),
		r.telemetry.RegisterNetflowtcpendDNSMessagesIncompleteCallback(stat(func(s dnscache.Stats) uint64 { return s.Incomplete })),
		r.telemetry.RegisterNetflowtcpendDNSParseErrorsCallback(stat(func(s dnscache.Stats) uint64 { return s.ParseErrors })),
		r.telemetry.RegisterNetflowtcpendDNSUnmatchedAnswersCallback(stat(func(s dnscache.Stats) uint64 { return s.Unmatched })),
	)
}

// Shutdown detaches the programs, passes on every record already in the ring
// buffer and frees the kernel objects. It is safe without Start and twice.
func (r *Receiver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.objs == nil || r.stopped {
		r.telemetry.Shutdown()
		return nil
	}
	r.stopped = true

	// No new records after this; the loop drains the ring and returns.
	r.objs.Detach()
	var err error
	if ferr := r.reader.Flush(); ferr != nil {
		// Closing interrupts the loop instead; unread records are lost.
		err = fmt.Errorf("flush ring buffer: %w", ferr)
		r.cancel()
		_ = r.reader.Close()
	}
	var grace <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		t := time.NewTimer(r.opts.shutdownGrace)
		defer t.Stop()
		grace = t.C
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		// Out of time: stop retrying the consumer and drop what is left.
		r.cancel()
		<-r.done
		err = errors.Join(err, ctx.Err())
	case <-grace:
		r.logger.Warn("The next consumers did not take the last records within the shutdown grace period; dropping them",
			zap.Duration("grace", r.opts.shutdownGrace))
		r.cancel()
		<-r.done
	}
	r.cancel()
	if r.k8s != nil {
		r.k8s.Stop()
	}
	// Unregister the gauge callback before the reader it reads goes away.
	r.telemetry.Shutdown()
	return errors.Join(err, r.nat.close(), r.reader.Close(), r.objs.Close())
}
