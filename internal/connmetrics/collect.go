package connmetrics

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Metric descriptions and units, as shared/CONTRACT.md and metadata.yaml
// give them.
const (
	descConnections     = "TCP connection ends of watched sockets (one per socket whose connection ended)."
	descIO              = "Payload bytes the sockets sent (transmit) and received (receive) up to their connection's end."
	descDuration        = "Durations of connections from their start to their end, where the start was observed."
	descRTT             = "Smoothed round-trip time of connections at their end, where the kernel had sampled one."
	descRetransmissions = "Segments the sockets retransmitted."
)

// Collect expires the series unseen for Settings.Expiry and returns the
// points of the others at now, with the number of points. With delta
// temporality it returns only the series added to since the last Collect
// and starts their values over: the caller must pass the result on (a
// caller that cannot should not collect yet; the deltas wait).
func (a *Aggregator) Collect(now pcommon.Timestamp) (pmetric.Metrics, int) {
	a.expire(now)
	md := pmetric.NewMetrics()
	c := collection{md: md, now: now, temporality: a.set.Temporality, scope: a.set.ScopeName,
		byResource: map[*resource]*resourceMetrics{}}
	for _, s := range a.series {
		c.add(s)
	}
	if a.overflow != nil {
		c.add(a.overflow)
	}
	// A histogram without a value yet has no point: leave it out.
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		rms.At(i).ScopeMetrics().At(0).Metrics().RemoveIf(func(m pmetric.Metric) bool {
			return m.Type() == pmetric.MetricTypeHistogram && m.Histogram().DataPoints().Len() == 0
		})
	}
	return md, c.points
}

// expire drops the series that have not changed since the last Collect and
// whose latest end is older than the expiry.
func (a *Aggregator) expire(now pcommon.Timestamp) {
	cutoff := now - pcommon.Timestamp(a.set.Expiry.Nanoseconds())
	gone := func(s *series) bool {
		if s.changed || s.seen >= cutoff {
			return false
		}
		if s.res.series--; s.res.series == 0 {
			delete(a.resources, s.res.container)
		}
		if s.key != "" && !s.ioOverflow {
			a.ioSeries -= 2
		}
		return true
	}
	for k, s := range a.series {
		if gone(s) {
			delete(a.series, k)
		}
	}
	if a.overflow != nil && gone(a.overflow) {
		a.overflow = nil
	}
}

// collection is the Metrics one Collect builds.
type collection struct {
	md          pmetric.Metrics
	now         pcommon.Timestamp
	temporality Temporality
	scope       string
	byResource  map[*resource]*resourceMetrics
	points      int
}

// resourceMetrics are the five metrics of one resource, made on first use.
type resourceMetrics struct {
	conns, io, retrans pmetric.NumberDataPointSlice
	duration, rtt      pmetric.HistogramDataPointSlice
}

func (c *collection) add(s *series) {
	if c.temporality == Delta {
		if !s.changed {
			s.start = c.now
			return
		}
		defer s.reset(c.now)
	}
	s.changed = false
	rm := c.resourceMetrics(s.res)
	// The overflow series has points only in the metrics that overflowed.
	ends := s.key != "" || s.overflowEnds
	io := s.key == "" && (s.overflowEnds || s.overflowIO) || s.key != "" && !s.ioOverflow
	if ends {
		c.number(rm.conns, s, s.conns, "")
	}
	if io {
		c.number(rm.io, s, s.sent, "transmit")
		c.number(rm.io, s, s.received, "receive")
	}
	if ends {
		c.number(rm.retrans, s, s.retrans, "")
		c.histogram(rm.duration, s, &s.duration, DurationBounds)
		c.histogram(rm.rtt, s, &s.rtt, RTTBounds)
	}
}

func (c *collection) number(dps pmetric.NumberDataPointSlice, s *series, v uint64, ioDirection string) {
	dp := dps.AppendEmpty()
	s.attrs.CopyTo(dp.Attributes())
	if ioDirection != "" {
		dp.Attributes().PutStr(AttrNetworkIODirection, ioDirection)
	}
	dp.SetStartTimestamp(s.start)
	dp.SetTimestamp(c.now)
	dp.SetIntValue(int64(v))
	c.points++
}

func (c *collection) histogram(dps pmetric.HistogramDataPointSlice, s *series, h *histogram, bounds []float64) {
	if h.count == 0 {
		return // no value yet (or, for delta, in this interval)
	}
	dp := dps.AppendEmpty()
	s.attrs.CopyTo(dp.Attributes())
	dp.SetStartTimestamp(s.start)
	dp.SetTimestamp(c.now)
	dp.SetCount(h.count)
	dp.SetSum(h.sum)
	dp.SetMin(h.min)
	dp.SetMax(h.max)
	dp.ExplicitBounds().FromRaw(bounds)
	dp.BucketCounts().FromRaw(h.buckets[:len(bounds)+1])
	c.points++
}

func (c *collection) resourceMetrics(r *resource) *resourceMetrics {
	if rm, ok := c.byResource[r]; ok {
		return rm
	}
	res := c.md.ResourceMetrics().AppendEmpty()
	r.attrs.CopyTo(res.Resource().Attributes())
	sm := res.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(c.scope)
	ms := sm.Metrics()
	temporality := pmetric.AggregationTemporalityCumulative
	if c.temporality == Delta {
		temporality = pmetric.AggregationTemporalityDelta
	}
	sum := func(name, unit, desc string) pmetric.NumberDataPointSlice {
		m := ms.AppendEmpty()
		m.SetName(name)
		m.SetUnit(unit)
		m.SetDescription(desc)
		s := m.SetEmptySum()
		s.SetIsMonotonic(true)
		s.SetAggregationTemporality(temporality)
		return s.DataPoints()
	}
	hist := func(name, desc string) pmetric.HistogramDataPointSlice {
		m := ms.AppendEmpty()
		m.SetName(name)
		m.SetUnit("s")
		m.SetDescription(desc)
		h := m.SetEmptyHistogram()
		h.SetAggregationTemporality(temporality)
		return h.DataPoints()
	}
	rm := &resourceMetrics{
		conns:    sum(MetricConnections, "{connection}", descConnections),
		io:       sum(MetricIO, "By", descIO),
		duration: hist(MetricDuration, descDuration),
		rtt:      hist(MetricRTT, descRTT),
		retrans:  sum(MetricRetransmissions, "{segment}", descRetransmissions),
	}
	c.byResource[r] = rm
	return rm
}
