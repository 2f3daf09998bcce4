//go:build linux

package receiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/containerid"
	"github.com/netflowtcpend/netflowtcpend/internal/dnscache"
	"github.com/netflowtcpend/netflowtcpend/internal/sockscan"
)

// readLoop owns everything on the path from the ring buffer to the next
// consumer; it runs on one goroutine, so nothing here needs a lock.
type readLoop struct {
	r      *Receiver
	objs   *bpf.Objects
	reader *ringbuf.Reader
	conv   converter
	losses lossWatcher

	// What the loop says of a next consumer that refuses or stalls.
	consumer consumerLog

	batch    *batch
	nextTick time.Time
	event    bpf.Event
	exes     bpf.Interner
	now      pcommon.Timestamp // observed time of the records being read
	sinceNow int               // records since now was taken
	drained  bool              // the last read emptied the ring
	dnsMsg   bpf.DNSMessage
	newCg    bpf.CgroupCreated
	tlsPiece bpf.TLSPiece

	// Server names from TLS ClientHellos, until their socket's end; nil
	// when TLS is off.
	tls *tlsNames

	// Sockets open before Start, until their record comes.
	preexisting *sockscan.Table
	// The path and container of each cgroup id seen, so that a record costs
	// one map lookup instead of the shared resolver's lock and a regexp.
	// Only ids the resolver knew are here: an unknown one may be learned
	// or walked later. Cgroup ids are never reused (64-bit kernfs ids), so
	// an entry never goes stale; it starts over at maxCgroupInfo entries.
	cgroupInfo map[uint64]cgroupInfo
}

// maxCgroupInfo bounds readLoop.cgroupInfo: a host may create millions of
// cgroups over time.
const maxCgroupInfo = 4096

func newReadLoop(r *Receiver, objs *bpf.Objects, rd *ringbuf.Reader, preexisting *sockscan.Table) *readLoop {
	l := &readLoop{
		r: r, objs: objs, reader: rd, preexisting: preexisting,
		losses:     lossWatcher{logger: r.logger, telemetry: r.telemetry, now: time.Now},
		consumer:   consumerLog{logger: r.logger, now: time.Now},
		batch:      newBatch(r.hostName, r.cfg.MaxBatchSize),
		cgroupInfo: map[uint64]cgroupInfo{},
		drained:    true,
	}
	if r.cfg.TLS.Enabled {
		l.tls = newTLSNames()
	}
	l.conv.attrs = r.cfg.Attributes.set()
	l.conv.capacity = l.conv.attrs.count()
	l.conv.clock.sync()
	return l
}

// run reads until Shutdown flushes or closes the reader. A tick, every
// flush interval, passes on the batch, re-syncs the clock and reads the
// kernel's loss counters; a full batch is passed on at once.
func (l *readLoop) run(ctx context.Context) {
	defer l.consumer.final()
	var rec ringbuf.Record
	l.tick(ctx)
	for {
		err := l.reader.ReadInto(&rec)
		switch {
		case err == nil:
			// The observed time: fresh after a wait for records (the
			// ring was drained), else every 64 records.
			if l.drained || l.sinceNow >= 64 {
				l.now = pcommon.NewTimestampFromTime(time.Now())
				l.sinceNow = 0
			}
			l.sinceNow++
			l.drained = rec.Remaining == 0
			l.add(rec.RawSample)
			if l.batch.len >= l.r.cfg.MaxBatchSize {
				l.flush(ctx)
			}
			// Ring drained: a slow trickle must not hold a batch back.
			if rec.Remaining == 0 && !time.Now().Before(l.nextTick) {
				l.tick(ctx)
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			l.tick(ctx)
		case errors.Is(err, ringbuf.ErrFlushed):
			// Shutdown: the programs are detached and the ring is empty.
			l.flush(ctx)
			l.pollLosses()
			return
		default:
			if !errors.Is(err, ringbuf.ErrClosed) && !errors.Is(err, os.ErrClosed) {
				l.r.logger.Error("Reading the ring buffer failed; stopping", zap.Error(err))
			}
			l.flush(ctx)
			return
		}
	}
}

func (l *readLoop) tick(ctx context.Context) {
	l.flush(ctx)
	l.pollLosses()
	l.conv.clock.sync()
	l.nextTick = time.Now().Add(l.r.cfg.FlushInterval)
	l.reader.SetDeadline(l.nextTick)
}

func (l *readLoop) pollLosses() {
	if l.objs == nil {
		return // a loop made by a unit test
	}
	stats, err := l.objs.Stats()
	if err != nil {
		l.r.logger.Warn("Reading kernel counters failed", zap.Error(err))
		return
	}
	l.losses.update(stats)
}

func (l *readLoop) add(raw []byte) {
	var err error
	switch bpf.TypeOf(raw) {
	case bpf.RecordTCPEnd:
		if err = l.event.DecodeInterned(raw, &l.exes); err == nil {
			l.addRecord()
		}
	case bpf.RecordDNS:
		if err = l.dnsMsg.Decode(raw); err == nil {
			l.observeDNS()
		}
	case bpf.RecordCgroup:
		if err = l.newCg.Decode(raw); err == nil {
			l.learnCgroup()
		}
	case bpf.RecordTLS:
		if err = l.tlsPiece.Decode(raw); err == nil && l.tls != nil {
			l.tls.observe(&l.tlsPiece)
		}
	default:
		err = fmt.Errorf("unknown record type %d", bpf.TypeOf(raw))
	}
	if err != nil {
		l.r.telemetry.NetflowtcpendRecordsMalformed.Add(context.Background(), 1)
		l.losses.malformed(err)
	}
}

func (l *readLoop) addRecord() {
	e := &l.event
	if e.Flags&bpf.FlagRetried != 0 {
		l.r.telemetry.NetflowtcpendRecordsRetried.Add(context.Background(), 1)
	}
	if e.StartNs == 0 && e.Direction == bpf.DirectionUnknown && !l.completePreexisting(e) {
		return // the collector's own, from before start
	}
	// Taken before the filters: a socket's name goes with its end.
	var sni tlsName
	if l.tls != nil {
		sni, _ = l.tls.take(e)
	}
	cg := l.cgroup(e.CgroupID)
	if !l.r.filters.keep(e, cg.path) {
		l.r.telemetry.NetflowtcpendRecordsFiltered.Add(context.Background(), 1)
		return
	}
	var srcNames, dstNames []string
	if l.r.dns != nil {
		netns := e.Netns
		if l.objs != nil && !l.objs.Features.DNSNetns {
			netns = 0 // DNS records carry none: one cache for all namespaces
		}
		srcNames = l.r.dns.Names(netns, e.Source.Addr(), e.StartNs, e.TimeNs)
		dstNames = l.r.dns.Names(netns, e.Destination.Addr(), e.StartNs, e.TimeNs)
	}
	lrs := l.batch.records(cg.container)
	l.conv.append(lrs, e, srcNames, dstNames, sni, l.now)
	l.batch.len++
}

// completePreexisting fills in what the scan at start learned of a socket
// whose handshake the programs did not see. It returns false for the
// collector's own sockets when those are excluded.
func (l *readLoop) completePreexisting(e *bpf.Event) bool {
	local, remote := e.Source, e.Destination
	if e.EndBy != bpf.EndByLocal {
		local, remote = remote, local
	}
	s, ok := l.preexisting.Take(e.Cookie, local, remote)
	if !ok {
		return true
	}
	if l.r.cfg.Filters.ExcludeSelf && s.PID == l.objs.SelfPID {
		return false
	}
	switch s.Direction {
	case sockscan.Incoming:
		e.Direction = bpf.DirectionIncoming
	case sockscan.Outgoing:
		e.Direction = bpf.DirectionOutgoing
	}
	if e.PID == 0 && s.PID != 0 {
		e.PID, e.Executable = uint32(s.PID), s.Executable
	}
	return true
}

type cgroupInfo struct {
	path      string // relative to the cgroup v2 root; "" when unknown
	container string // "" for none
}

func (l *readLoop) cgroup(id uint64) cgroupInfo {
	if info, ok := l.cgroupInfo[id]; ok {
		return info
	}
	path, ok := l.r.cgroups.Path(id)
	info := cgroupInfo{path: path, container: containerid.FromCgroupPath(path)}
	if !ok { // not cached: it may be learned or walked later
		l.r.telemetry.NetflowtcpendRecordsCgroupUnresolved.Add(context.Background(), 1)
		return info
	}
	if len(l.cgroupInfo) >= maxCgroupInfo {
		clear(l.cgroupInfo)
	}
	l.cgroupInfo[id] = info
	return info
}

// learnCgroup gives the resolver a cgroup that the kernel reported at its
// creation. Its record precedes those of its sockets in the ring buffer, so
// they find its path even if the cgroup is gone by the time they are read.
func (l *readLoop) learnCgroup() {
	c := &l.newCg
	if c.Truncated {
		l.r.logger.Debug("A new cgroup's path is too long for its record; its records rely on walks of the cgroup tree",
			zap.Uint64("cgroup_id", c.ID), zap.Int("path_length", c.PathLen))
		return
	}
	if l.r.cgroups.Learn(c.ID, c.ParentID, c.Path) {
		l.r.telemetry.NetflowtcpendCgroupsLearned.Add(context.Background(), 1)
	}
}

func (l *readLoop) observeDNS() {
	if l.r.dns == nil {
		return
	}
	m := &l.dnsMsg
	l.r.dns.Observe(dnscache.Message{
		TimeNs: m.TimeNs, Cookie: m.Cookie, Netns: m.Netns,
		Source: m.Source, Dest: m.Destination, Sent: m.Egress,
		TCP: m.TCP, Payload: m.Payload, Truncated: m.WireLen > len(m.Payload),
	})
}

// flush passes the batch to the next consumer. A consumer that refuses with
// a retryable error (a memory_limiter, an exporter's full queue) is retried
// with backoff (50 ms doubling to 5 s): the reader stops meanwhile, so the
// kernel ring buffer holds new records, and what does not fit there is
// counted as lost. A consumer that does not return is waited for in the same
// way. The kernel's loss counters are still read every flush interval
// meanwhile, and what happens is logged at most every warnEvery. Only a
// permanent error or Shutdown's deadline drops a batch, counted in
// records_dropped.
func (l *readLoop) flush(ctx context.Context) {
	defer l.consumer.report()
	if l.batch.len == 0 {
		return
	}
	logs, n := l.batch.take()

	backoff := 50 * time.Millisecond
	for {
		err := l.consume(ctx, logs, n)
		switch {
		case err == nil:
			l.consumer.accept()
			return
		case consumererror.IsPermanent(err):
			l.drop(n, err)
			return
		}
		l.consumer.refuse(n, err)
		l.consumer.report()
		if !l.wait(ctx, backoff) {
			l.drop(n, fmt.Errorf("shutting down while the next consumer refuses records: %w", err))
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// consume makes one ConsumeLogs call. While it has not returned, the
// kernel's loss counters are read every flush interval.
func (l *readLoop) consume(ctx context.Context, logs plog.Logs, n int) error {
	opCtx := l.r.obsrecv.StartLogsOp(ctx)
	done := make(chan error, 1)
	go func() { done <- l.r.next.ConsumeLogs(opCtx, logs) }()
	var err error
	select {
	case err = <-done: // the usual case: no timer
	default:
		start := l.consumer.now()
		tick := time.NewTicker(l.r.cfg.FlushInterval)
	wait:
		for {
			select {
			case err = <-done:
				break wait
			case <-tick.C:
				l.pollLosses()
				l.consumer.waiting(start)
				l.consumer.report()
			}
		}
		tick.Stop()
		l.consumer.waiting(time.Time{})
	}
	l.r.obsrecv.EndLogsOp(opCtx, "netflow", n, err)
	return err
}

// wait sleeps for d, reading the kernel's loss counters every flush
// interval; false if ctx ended first.
func (l *readLoop) wait(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	tick := time.NewTicker(l.r.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-tick.C:
			l.pollLosses()
		}
	}
}

func (l *readLoop) drop(n int, err error) {
	l.r.telemetry.NetflowtcpendRecordsDropped.Add(context.Background(), int64(n))
	l.consumer.drop(n, err)
}
