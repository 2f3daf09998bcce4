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
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
)

// kernelCounters reads the kernel programs' cumulative counters (the
// *bpf.Objects).
type kernelCounters interface {
	Stats() (bpf.Stats, error)
}

// readLoop owns everything on the path from the ring buffer to the next
// consumer; it runs on one goroutine, so nothing here needs a lock. It is
// built with everything it uses (readLoopSettings).
//
// Each connection-end record goes the same way: decoded (add), enriched
// (enricher: the scan at start, the filters, its cgroup and container, DNS
// names), then handed to the sinks: the logs batch, which flush passes to
// the next consumer of a logs pipeline, and the metrics, whose points go to
// the next consumer of a metrics pipeline every metrics.interval (the
// receiver is in one or both).
type readLoop struct {
	logger        *zap.Logger
	telemetry     *metadata.TelemetryBuilder
	reader        *ringbuf.Reader
	counters      kernelCounters
	flushInterval time.Duration

	enrich  enricher
	logs    *logsSink    // nil when not in a logs pipeline
	metrics *metricsSink // nil when not in a metrics pipeline
	losses  lossWatcher
	// What the loop says of a next consumer that refuses or stalls.
	consumer consumerLog
	// Beside a metrics pipeline, the log batches go to a goroutine of
	// their own through this queue (logsqueue.go); nil otherwise.
	logsQueue *logsQueue
	ending    bool // the ring is drained for Shutdown

	nextTick time.Time
	now      pcommon.Timestamp // observed time of the records being read
	sinceNow int               // records since now was taken
	drained  bool              // the last read emptied the ring

	// Decoding, reused from record to record.
	event    bpf.Event
	exes     *bpf.Interner
	dnsMsg   bpf.DNSMessage
	newCg    bpf.CgroupCreated
	tlsPiece bpf.TLSPiece
	// The record being made: a field, not a local, because the sinks take
	// its address, which would move a local to the heap for every record.
	end connectionEnd
}

// readLoopSettings are what the read loop uses (Receiver.loopSettings).
type readLoopSettings struct {
	logger        *zap.Logger
	telemetry     *metadata.TelemetryBuilder
	reader        *ringbuf.Reader
	counters      kernelCounters
	flushInterval time.Duration
	enrich        enricherSettings
	logs          logsSinkSettings    // no logs sink when logs.next is nil
	metrics       metricsSinkSettings // no metrics sink when metrics.next is nil
}

func newReadLoop(s readLoopSettings) *readLoop {
	l := &readLoop{
		logger: s.logger, telemetry: s.telemetry, reader: s.reader, counters: s.counters,
		flushInterval: s.flushInterval,
		enrich:        newEnricher(s.enrich),
		losses:        lossWatcher{logger: s.logger, telemetry: s.telemetry, now: time.Now},
		consumer:      consumerLog{logger: s.logger, now: time.Now},
		exes:          bpf.NewInterner(),
		drained:       true,
	}
	if s.logs.next != nil {
		l.logs = newLogsSink(s.logs)
	}
	if s.metrics.next != nil {
		l.metrics = newMetricsSink(s.metrics, l.logs != nil)
		if l.logs != nil {
			l.logsQueue = newLogsQueue()
			l.consumer.queued = true
		}
	}
	return l
}

// run reads until Shutdown flushes or closes the reader. A tick, every
// flush interval, passes on the batch, re-syncs the clock and reads the
// kernel's loss counters; a full batch is passed on at once.
func (l *readLoop) run(ctx context.Context) {
	l.startSinks(ctx)
	defer l.stopSinks(ctx)
	var rec ringbuf.Record
	l.tick(ctx)
	for {
		err := l.reader.ReadInto(&rec)
		switch {
		case err == nil:
			// The observed time: fresh after a wait for records (the
			// ring was drained), else every 64 records.
			if l.drained || l.sinceNow >= 64 {
				now := time.Now()
				l.now = pcommon.NewTimestampFromTime(now)
				l.sinceNow = 0
				l.exportMetrics(now) // a ring that never drains still exports
			}
			l.sinceNow++
			l.drained = rec.Remaining == 0
			l.add(rec.RawSample)
			if l.logs != nil && l.logs.full() {
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
			l.ending = true
			l.flush(ctx)
			l.pollLosses()
			return
		default:
			if !errors.Is(err, ringbuf.ErrClosed) && !errors.Is(err, os.ErrClosed) {
				l.logger.Error("Reading the ring buffer failed; stopping", zap.Error(err))
			}
			l.flush(ctx)
			return
		}
	}
}

func (l *readLoop) tick(ctx context.Context) {
	l.flush(ctx)
	l.pollLosses()
	if l.logs != nil {
		l.logs.conv.clock.sync()
	}
	now := time.Now()
	l.exportMetrics(now)
	l.nextTick = now.Add(l.flushInterval)
	l.reader.SetDeadline(l.nextTick)
}

// exportMetrics hands the metric points over when they are due.
func (l *readLoop) exportMetrics(now time.Time) {
	if l.metrics != nil && l.metrics.due(now) {
		l.metrics.export(now)
	}
}

// startSinks starts the goroutines of the sinks: the metrics sender, and
// the logs queue's delivery beside it.
func (l *readLoop) startSinks(ctx context.Context) {
	if l.metrics != nil {
		l.metrics.sender.start()
	}
	if l.logsQueue != nil {
		go l.deliverQueued(ctx)
	}
}

// stopSinks, as the read loop ends, passes on the last metric points and
// the queued log batches, until ctx ends (Shutdown's deadline).
func (l *readLoop) stopSinks(ctx context.Context) {
	if l.metrics != nil {
		l.metrics.final(ctx)
		if err := l.metrics.sender.stop(ctx); err != nil {
			l.logger.Warn("Shutdown ran out of time before the last metric points were passed on", zap.Error(err))
		}
	}
	if l.logsQueue != nil {
		l.logsQueue.close() // deliverQueued ends with l.consumer.final()
		return
	}
	l.consumer.final()
}

func (l *readLoop) pollLosses() {
	stats, err := l.counters.Stats()
	if err != nil {
		l.logger.Warn("Reading kernel counters failed", zap.Error(err))
		return
	}
	l.losses.update(stats)
}

// add decodes one record of the ring buffer and passes it on by its type.
func (l *readLoop) add(raw []byte) {
	var err error
	switch bpf.TypeOf(raw) {
	case bpf.RecordTCPEnd:
		if err = l.event.DecodeInterned(raw, l.exes); err == nil {
			l.connectionEnded(&l.event)
		}
	case bpf.RecordDNS:
		if err = l.dnsMsg.Decode(raw); err == nil {
			l.enrich.observeDNS(&l.dnsMsg)
		}
	case bpf.RecordCgroup:
		if err = l.newCg.Decode(raw); err == nil {
			l.enrich.learnCgroup(&l.newCg)
		}
	case bpf.RecordTLS:
		if err = l.tlsPiece.Decode(raw); err == nil {
			l.enrich.observeTLS(&l.tlsPiece)
		}
	default:
		err = fmt.Errorf("unknown record type %d", bpf.TypeOf(raw))
	}
	if err != nil {
		l.telemetry.NetflowtcpendRecordsMalformed.Add(context.Background(), 1)
		l.losses.malformed(err)
	}
}

// connectionEnded enriches a decoded end record and hands it to the sinks.
func (l *readLoop) connectionEnded(e *bpf.Event) {
	var ok bool
	if l.end, ok = l.enrich.end(e); !ok {
		return
	}
	var rec pcommon.Map // the record's attributes, for metrics.attributes
	if l.logs != nil {
		rec = l.logs.add(&l.end, l.now)
	}
	if l.metrics != nil {
		l.metrics.add(&l.end, rec, l.now)
	}
}

// flush passes the batch to the next consumer. A consumer that refuses with
// a retryable error (a memory_limiter, an exporter's full queue) is retried
// with backoff (50 ms doubling to 5 s): the reader stops meanwhile, so the
// kernel ring buffer holds new records, and what does not fit there is
// counted as lost. A consumer that does not return is waited for in the same
// way. The kernel's loss counters are still read every flush interval
// meanwhile, and what happens is logged at most every warnEvery. Only a
// permanent error or Shutdown's deadline drops a batch, counted in
// records_dropped. Beside a metrics pipeline, the batch goes to the logs
// queue instead, whose goroutine does the same (deliver) while the read
// loop reads on.
func (l *readLoop) flush(ctx context.Context) {
	if l.logs == nil {
		return
	}
	logs, n := l.logs.take()
	if l.logsQueue != nil {
		if n > 0 {
			l.enqueue(ctx, logs, n)
		}
		return
	}
	l.deliver(ctx, logs, n)
}

// deliver passes one batch (n records; none: only the report) to the next
// consumer, as flush says.
func (l *readLoop) deliver(ctx context.Context, logs plog.Logs, n int) {
	defer l.consumer.report()
	if n == 0 {
		return
	}
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
	opCtx := l.logs.obsrecv.StartLogsOp(ctx)
	done := make(chan error, 1)
	go func() { done <- l.logs.next.ConsumeLogs(opCtx, logs) }()
	var err error
	select {
	case err = <-done: // the usual case: no timer
	default:
		start := l.consumer.now()
		tick := time.NewTicker(l.flushInterval)
	wait:
		for {
			select {
			case err = <-done:
				break wait
			case <-tick.C:
				if l.logsQueue == nil { // else the read loop reads them
					l.pollLosses()
				}
				l.takeQueueDrops()
				l.consumer.waiting(start)
				l.consumer.report()
			}
		}
		tick.Stop()
		l.consumer.waiting(time.Time{})
	}
	l.logs.obsrecv.EndLogsOp(opCtx, "netflow", n, err)
	return err
}

// wait sleeps for d, reading the kernel's loss counters every flush
// interval; false if ctx ended first.
func (l *readLoop) wait(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	tick := time.NewTicker(l.flushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-tick.C:
			if l.logsQueue == nil {
				l.pollLosses()
			}
		}
	}
}

func (l *readLoop) drop(n int, err error) {
	l.telemetry.NetflowtcpendRecordsDropped.Add(context.Background(), int64(n))
	l.consumer.drop(n, err)
}
