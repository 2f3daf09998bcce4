//go:build linux

package receiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.uber.org/zap"

	"github.com/netflowtcpend/netflowtcpend/internal/connmetrics"
)

// metricsSender passes points to the next consumer of the metrics
// pipeline on a goroutine of its own, so that a slow or refusing consumer
// never holds up the read loop (which would lose connection ends to a full
// ring buffer, from the metrics too). It holds one set of points waiting
// besides the one being passed on.
type metricsSender struct {
	logger      *zap.Logger
	obsrecv     *receiverhelper.ObsReport
	next        consumer.Metrics
	temporality connmetrics.Temporality

	queue   chan pmetric.Metrics
	ctx     context.Context // ended by stop: no more retries
	cancel  context.CancelFunc
	done    chan struct{}
	started bool

	// Refusals not yet logged (at most one line per warnEvery).
	lastLine     time.Time
	refused      int // points
	lastRefusal  error
	refusedCalls int
}

func newMetricsSender(logger *zap.Logger, obsrecv *receiverhelper.ObsReport, next consumer.Metrics, t connmetrics.Temporality) *metricsSender {
	ctx, cancel := context.WithCancel(context.Background())
	return &metricsSender{logger: logger, obsrecv: obsrecv, next: next, temporality: t,
		queue: make(chan pmetric.Metrics, 1), ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// start starts the goroutine that passes points on.
func (s *metricsSender) start() {
	s.started = true
	go s.run()
}

func (s *metricsSender) run() {
	defer close(s.done)
	for md := range s.queue {
		s.deliver(md)
	}
	s.report(true)
}

// room says whether send would not block. Only the read loop sends.
func (s *metricsSender) room() bool { return len(s.queue) < cap(s.queue) }

// send queues points; the caller checked room.
func (s *metricsSender) send(md pmetric.Metrics) { s.queue <- md }

// sendWait queues points, waiting for room until ctx ends.
func (s *metricsSender) sendWait(ctx context.Context, md pmetric.Metrics) {
	select {
	case s.queue <- md:
	case <-ctx.Done():
	}
}

// stop passes on what is queued and returns when done, or when ctx ends
// (then what is left is dropped).
func (s *metricsSender) stop(ctx context.Context) error {
	if !s.started {
		s.cancel()
		return nil
	}
	close(s.queue)
	select {
	case <-s.done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		<-s.done
		return ctx.Err()
	}
}

// deliver makes ConsumeMetrics calls until one succeeds. A refusal drops
// cumulative points (the next interval's carry the totals) and permanent
// refusals of any; delta points are retried with backoff (100 ms doubling
// to 5 s) until they are taken or the sender stops, while the read loop
// keeps adding to the next ones.
func (s *metricsSender) deliver(md pmetric.Metrics) {
	points := md.DataPointCount()
	backoff := 100 * time.Millisecond
	for {
		ctx := s.obsrecv.StartMetricsOp(s.ctx)
		err := s.next.ConsumeMetrics(ctx, md)
		s.obsrecv.EndMetricsOp(ctx, "netflow", points, err)
		if err == nil {
			return
		}
		s.refusedCalls++
		s.refused += points
		s.lastRefusal = err
		s.report(false)
		if consumererror.IsPermanent(err) || s.temporality == connmetrics.Cumulative {
			return
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// report logs refusals not yet logged, at most once per warnEvery unless
// forced.
func (s *metricsSender) report(force bool) {
	if s.refusedCalls == 0 || !force && time.Since(s.lastLine) < warnEvery {
		return
	}
	s.lastLine = time.Now()
	what := "cumulative points: the next interval's carry the totals"
	if s.temporality == connmetrics.Delta {
		what = "delta points: retried with backoff while new ends are counted into the next ones; permanent refusals are dropped"
	}
	s.logger.Warn("The metrics pipeline refused points ("+what+")",
		zap.Int("refusals", s.refusedCalls), zap.Int("points_refused", s.refused), zap.Error(s.lastRefusal))
	s.refusedCalls, s.refused = 0, 0
}
