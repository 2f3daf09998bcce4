//go:build linux

package receiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.uber.org/zap"

	"github.com/netflowtcpend/netflowtcpend/internal/connmetrics"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
)

// metricsSinkSettings are what the metrics sink uses.
type metricsSinkSettings struct {
	logger   *zap.Logger
	cfg      MetricsConfig
	hostName string
	obsrecv  *receiverhelper.ObsReport
	next     consumer.Metrics
	k8s      bool // records may carry netflow.peer.k8s.* attributes
}

// metricsSink counts connection ends in the metrics (the aggregator) and,
// every metrics.interval, hands their points to the sender, which passes
// them to the next consumer of a metrics pipeline. It is the read loop's:
// add, due and export run on its goroutine.
type metricsSink struct {
	agg      *connmetrics.Aggregator
	end      connmetrics.End // reused from end to end
	clock    clock           // for the ends' times
	interval time.Duration
	next     time.Time // when points are due
	sender   *metricsSender
	logger   *zap.Logger
	// What was said of the overflow series: at most one line per
	// warnEvery, when ends overflowed since.
	maxSeries      int
	overflowLogged uint64
	overflowLine   time.Time

	// With metrics.attributes and no logs sink, the record each end would
	// have, converted here (then dropped) for its attributes.
	ownRecords bool
	conv       converter
	records    plog.LogRecordSlice
}

func newMetricsSink(s metricsSinkSettings, hasLogs bool) *metricsSink {
	m := &metricsSink{
		agg:      connmetrics.New(s.cfg.settings(s.hostName, metadata.ScopeName)),
		interval: s.cfg.Interval,
		next:     time.Now().Add(s.cfg.Interval),
		sender:   newMetricsSender(s.logger, s.obsrecv, s.next, s.cfg.Temporality),
		logger:   s.logger, maxSeries: s.cfg.MaxSeries,
	}
	m.clock.sync()
	if len(s.cfg.Attributes) > 0 && !hasLogs {
		m.ownRecords = true
		m.conv.init(recordAttributes(s.cfg.Attributes))
		if s.k8s {
			m.conv.capacity += numK8sPeerAttributes
		}
		m.records = plog.NewLogRecordSlice()
	}
	return m
}

// add counts end. rec is its log record's attributes, as the logs sink
// made them; the zero Map without a logs sink.
func (m *metricsSink) add(end *connectionEnd, rec pcommon.Map, observed pcommon.Timestamp) {
	e := end.event
	if m.ownRecords {
		m.records.RemoveIf(func(plog.LogRecord) bool { return true })
		m.conv.k8sPeer = nil
		if end.hasK8sPeer {
			m.conv.k8sPeer = &end.k8sPeer
		}
		m.conv.append(m.records, e, end.srcNames, end.dstNames, end.sni, observed)
		rec = m.records.At(0).Attributes()
	}
	x := &m.end
	x.Time = m.clock.wall(e.TimeNs)
	x.Container = end.cgroup.container
	x.Direction = e.Direction.String()
	x.EndReason = e.EndReason.String()
	x.ErrorType = errorType(e)
	x.ServerPort = serverPort(e)
	x.NetworkType = networkType(e)
	x.BytesSent, x.BytesReceived, x.Retransmits = e.BytesSent, e.BytesReceived, uint64(e.Retransmits)
	x.StartObserved = startObserved(e)
	x.Duration = 0
	if x.StartObserved {
		x.Duration = time.Duration(e.TimeNs - e.StartNs).Seconds()
	}
	x.RTT = float64(e.SRTTMicros) / 1e6
	x.Record = rec
	m.agg.Add(x)
	x.Record = pcommon.Map{} // not held past the record's batch
}

// recordAttributes are the attributes the records converted for keys
// carry: the event's own and those keys, no more.
func recordAttributes(keys []string) attributeSet {
	var set attributeSet
	for _, a := range coreAttributes {
		set |= 1 << a
	}
	for _, k := range keys {
		if a, ok := attributeByKey(k); ok {
			set |= 1 << a
		}
	}
	return set
}

// due says whether points are to be handed over at now.
func (m *metricsSink) due(now time.Time) bool { return !now.Before(m.next) }

// export hands the points over if the sender has room, and sets the next
// time. Without room (the next consumer still has the last points, or is
// being retried), nothing is collected: cumulative points carry the totals
// next time, and delta values wait in the aggregator.
func (m *metricsSink) export(now time.Time) {
	m.next = now.Add(m.interval)
	m.clock.sync()
	m.reportOverflow(now)
	if !m.sender.room() {
		return
	}
	if md, points := m.agg.Collect(pcommon.NewTimestampFromTime(now)); points > 0 {
		m.sender.send(md)
	}
}

// final hands over the last points at shutdown, waiting for room in the
// sender until ctx ends.
func (m *metricsSink) final(ctx context.Context) {
	if md, points := m.agg.Collect(pcommon.NewTimestampFromTime(time.Now())); points > 0 {
		m.sender.sendWait(ctx, md)
	}
}

// reportOverflow warns, at most once per warnEvery, that ends of new
// attribute sets go to the overflow series.
func (m *metricsSink) reportOverflow(now time.Time) {
	n := m.agg.Overflowed()
	if n == m.overflowLogged || now.Sub(m.overflowLine) < warnEvery {
		return
	}
	m.logger.Warn("metrics.max_series reached: connection ends of further attribute sets are counted in the points with "+
		"otel.metric.overflow: true (totals stay exact); raise metrics.max_series, group addresses with metrics.address_prefix, "+
		"or drop attributes from metrics.attributes",
		zap.Int("max_series", m.maxSeries), zap.Uint64("ends_overflowed", n-m.overflowLogged), zap.Uint64("ends_overflowed_total", n))
	m.overflowLogged, m.overflowLine = n, now
}
