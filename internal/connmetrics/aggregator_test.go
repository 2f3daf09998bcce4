package connmetrics

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

var t0 = pcommon.NewTimestampFromTime(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))

func at(d time.Duration) pcommon.Timestamp { return t0 + pcommon.Timestamp(d.Nanoseconds()) }

func settings() Settings {
	return Settings{MaxSeries: 100, Expiry: 5 * time.Minute, IPv4Prefix: 32, IPv6Prefix: 128, HostName: "node-1", ScopeName: "test"}
}

// end is an outgoing end to server port 443 with a FIN.
func end(mods ...func(*End)) *End {
	e := &End{Time: t0, Direction: "outgoing", EndReason: "fin", ServerPort: 443, NetworkType: "ipv4",
		BytesSent: 100, BytesReceived: 1000, Retransmits: 1, Duration: 0.2, StartObserved: true, RTT: 0.003}
	for _, m := range mods {
		m(e)
	}
	return e
}

// point is one data point, flattened for assertions.
type point struct {
	metric   string
	resource map[string]any
	attrs    map[string]any
	start    pcommon.Timestamp
	value    int64   // sums
	count    uint64  // histograms
	sum      float64 // histograms
	buckets  []uint64
}

func points(md pmetric.Metrics) []point {
	var out []point
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		res := rms.At(i).Resource().Attributes().AsRaw()
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				m := ms.At(k)
				switch m.Type() {
				case pmetric.MetricTypeSum:
					dps := m.Sum().DataPoints()
					for l := range dps.Len() {
						dp := dps.At(l)
						out = append(out, point{metric: m.Name(), resource: res, attrs: dp.Attributes().AsRaw(),
							start: dp.StartTimestamp(), value: dp.IntValue()})
					}
				case pmetric.MetricTypeHistogram:
					dps := m.Histogram().DataPoints()
					for l := range dps.Len() {
						dp := dps.At(l)
						out = append(out, point{metric: m.Name(), resource: res, attrs: dp.Attributes().AsRaw(),
							start: dp.StartTimestamp(), count: dp.Count(), sum: dp.Sum(), buckets: dp.BucketCounts().AsRaw()})
					}
				}
			}
		}
	}
	return out
}

// total sums a metric's values (sums) or counts (histograms) over the
// points that match.
func total(ps []point, metric string, match func(point) bool) int64 {
	var n int64
	for _, p := range ps {
		if p.metric != metric || match != nil && !match(p) {
			continue
		}
		n += p.value + int64(p.count)
	}
	return n
}

func seriesOf(ps []point, metric string) int {
	n := 0
	for _, p := range ps {
		if p.metric == metric {
			n++
		}
	}
	return n
}

func TestSumsAndAttributes(t *testing.T) {
	a := New(settings())
	a.Add(end())
	a.Add(end())
	a.Add(end(func(e *End) { e.Direction, e.ServerPort, e.Container = "incoming", 8080, "c0ffee" }))
	a.Add(end(func(e *End) {
		e.EndReason, e.ErrorType, e.BytesSent, e.BytesReceived, e.RTT, e.Retransmits = "rst", "connection_refused", 0, 0, 0, 2
	}))
	a.Add(end(func(e *End) { e.Direction, e.ServerPort, e.StartObserved = "unknown", 0, false }))
	md, n := a.Collect(at(time.Second))
	ps := points(md)
	require.Len(t, ps, n)
	assert.Equal(t, 4, a.Series())

	assert.EqualValues(t, 5, total(ps, MetricConnections, nil))
	assert.EqualValues(t, 400, total(ps, MetricIO, func(p point) bool { return p.attrs[AttrNetworkIODirection] == "transmit" }))
	assert.EqualValues(t, 4000, total(ps, MetricIO, func(p point) bool { return p.attrs[AttrNetworkIODirection] == "receive" }))
	assert.EqualValues(t, 6, total(ps, MetricRetransmissions, nil))
	assert.EqualValues(t, 4, total(ps, MetricDuration, nil), "the unknown end's start was not observed")
	assert.EqualValues(t, 4, total(ps, MetricRTT, nil), "the refused connect has no RTT")

	byAttrs := map[string]point{}
	for _, p := range ps {
		if p.metric == MetricConnections {
			byAttrs[fmt.Sprint(p.attrs)] = p
		}
	}
	refused := byAttrs[fmt.Sprint(map[string]any{AttrDirection: "outgoing", AttrEndReason: "rst", AttrErrorType: "connection_refused",
		AttrServerPort: int64(443), AttrNetworkType: "ipv4"})]
	assert.EqualValues(t, 1, refused.value)
	assert.Equal(t, map[string]any{AttrHostName: "node-1"}, refused.resource)
	unknown := byAttrs[fmt.Sprint(map[string]any{AttrDirection: "unknown", AttrEndReason: "fin", AttrNetworkType: "ipv4"})]
	assert.EqualValues(t, 1, unknown.value, "no server.port when the direction is unknown")
	incoming := byAttrs[fmt.Sprint(map[string]any{AttrDirection: "incoming", AttrEndReason: "fin", AttrServerPort: int64(8080), AttrNetworkType: "ipv4"})]
	assert.Equal(t, map[string]any{AttrHostName: "node-1", AttrContainerID: "c0ffee"}, incoming.resource)
	assert.Equal(t, t0, incoming.start)
}

func TestMetricsTypesAndUnits(t *testing.T) {
	a := New(settings())
	a.Add(end())
	md, _ := a.Collect(at(time.Second))
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	assert.Equal(t, "test", md.ResourceMetrics().At(0).ScopeMetrics().At(0).Scope().Name())
	got := map[string]string{}
	for i := range ms.Len() {
		m := ms.At(i)
		desc := m.Type().String() + " " + m.Unit()
		switch m.Type() {
		case pmetric.MetricTypeSum:
			desc += fmt.Sprintf(" monotonic=%v %s", m.Sum().IsMonotonic(), m.Sum().AggregationTemporality())
		case pmetric.MetricTypeHistogram:
			desc += " " + m.Histogram().AggregationTemporality().String()
		}
		got[m.Name()] = desc
		assert.NotEmpty(t, m.Description())
	}
	assert.Equal(t, map[string]string{
		MetricConnections:     "Sum {connection} monotonic=true Cumulative",
		MetricIO:              "Sum By monotonic=true Cumulative",
		MetricDuration:        "Histogram s Cumulative",
		MetricRTT:             "Histogram s Cumulative",
		MetricRetransmissions: "Sum {segment} monotonic=true Cumulative",
	}, got)
}

func TestHistogramBuckets(t *testing.T) {
	require.LessOrEqual(t, len(DurationBounds)+1, maxBuckets)
	require.LessOrEqual(t, len(RTTBounds)+1, maxBuckets)
	for _, b := range [][]float64{DurationBounds, RTTBounds} {
		for i := 1; i < len(b); i++ {
			require.Less(t, b[i-1], b[i], "bounds increase")
		}
	}
	a := New(settings())
	// On a bound: in that bound's bucket (upper bounds are inclusive).
	for _, d := range []float64{0.0005, 0.001, 0.0011, 0.2, 7200} {
		a.Add(end(func(e *End) { e.Duration = d }))
	}
	md, _ := a.Collect(at(time.Second))
	var h pmetric.HistogramDataPoint
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for i := range ms.Len() {
		if ms.At(i).Name() == MetricDuration {
			h = ms.At(i).Histogram().DataPoints().At(0)
		}
	}
	want := make([]uint64, len(DurationBounds)+1)
	want[0] = 2                   // 0.5 ms and 1 ms
	want[1] = 1                   // 1.1 ms
	want[5] = 1                   // 0.2 s in (0.1, 0.5]
	want[len(DurationBounds)] = 1 // 2 h: above every bound
	assert.Equal(t, want, h.BucketCounts().AsRaw())
	assert.Equal(t, DurationBounds, h.ExplicitBounds().AsRaw())
	assert.EqualValues(t, 5, h.Count())
	assert.InDelta(t, 0.0005+0.001+0.0011+0.2+7200, h.Sum(), 1e-9)
	assert.InDelta(t, 0.0005, h.Min(), 1e-12)
	assert.InDelta(t, 7200.0, h.Max(), 1e-9)
}

// Beyond max_series, ends go to one overflow point per metric, on the
// host's resource, with totals exact.
func TestMaxSeriesOverflow(t *testing.T) {
	set := settings()
	set.MaxSeries = 3
	a := New(set)
	for port := 1; port <= 10; port++ {
		for range port {
			a.Add(end(func(e *End) { e.ServerPort, e.Container = port, "c1" }))
		}
	}
	assert.Equal(t, 3, a.Series())
	assert.EqualValues(t, 55-6, a.Overflowed(), "ports 4 to 10 overflow")
	md, _ := a.Collect(at(time.Second))
	ps := points(md)
	for _, m := range []string{MetricConnections, MetricDuration, MetricRTT, MetricRetransmissions} {
		assert.Equal(t, 4, seriesOf(ps, m), "%s: 3 series and the overflow", m)
	}
	// io has two series per attribute set: the first set's two fill its
	// max_series of 3; the other sets' bytes go to its overflow points.
	assert.Equal(t, 4, seriesOf(ps, MetricIO), "transmit and receive of one set, and of the overflow")
	isOverflow := func(p point) bool { return p.attrs[AttrOverflow] == true }
	for _, m := range []string{MetricConnections, MetricIO, MetricDuration, MetricRTT, MetricRetransmissions} {
		own := 0
		for _, p := range ps {
			if p.metric == m && !isOverflow(p) {
				own++
			}
		}
		assert.LessOrEqual(t, own, set.MaxSeries, "%s: series besides the overflow", m)
	}
	assert.EqualValues(t, 55, total(ps, MetricConnections, nil))
	assert.EqualValues(t, 5500, total(ps, MetricIO, func(p point) bool { return p.attrs[AttrNetworkIODirection] == "transmit" }))
	assert.EqualValues(t, 49, total(ps, MetricConnections, isOverflow))
	assert.EqualValues(t, 5500-100, total(ps, MetricIO, func(p point) bool {
		return isOverflow(p) && p.attrs[AttrNetworkIODirection] == "transmit"
	}), "every set's bytes but the first's")
	for _, p := range ps {
		if isOverflow(p) {
			want := map[string]any{AttrOverflow: true}
			if p.metric == MetricIO {
				want[AttrNetworkIODirection] = p.attrs[AttrNetworkIODirection]
			}
			assert.Equal(t, want, p.attrs)
			assert.Equal(t, map[string]any{AttrHostName: "node-1"}, p.resource)
		}
	}

	// An existing series still gets its own ends.
	a.Add(end(func(e *End) { e.ServerPort, e.Container = 1, "c1" }))
	md, _ = a.Collect(at(2 * time.Second))
	assert.EqualValues(t, 2, total(points(md), MetricConnections, func(p point) bool { return p.attrs[AttrServerPort] == int64(1) }))
}

// With room for every attribute set's ends but not for two io series each,
// only io overflows: its overflow series has io points and no others.
func TestMaxSeriesOverflowOfIOOnly(t *testing.T) {
	set := settings()
	set.MaxSeries = 3
	a := New(set)
	for port := 1; port <= 3; port++ {
		a.Add(end(func(e *End) { e.ServerPort = port }))
	}
	assert.Zero(t, a.Overflowed(), "3 sets fit in max_series")
	md, _ := a.Collect(at(time.Second))
	ps := points(md)
	isOverflow := func(p point) bool { return p.attrs[AttrOverflow] == true }
	for _, m := range []string{MetricConnections, MetricDuration, MetricRTT, MetricRetransmissions} {
		assert.Equal(t, 3, seriesOf(ps, m), m)
		assert.Zero(t, total(ps, m, isOverflow), m)
	}
	assert.Equal(t, 4, seriesOf(ps, MetricIO))
	assert.EqualValues(t, 300, total(ps, MetricIO, func(p point) bool { return p.attrs[AttrNetworkIODirection] == "transmit" }))
	assert.EqualValues(t, 200, total(ps, MetricIO, func(p point) bool {
		return isOverflow(p) && p.attrs[AttrNetworkIODirection] == "transmit"
	}))

	// When the set with io series of its own expires, a new set gets them.
	a.Add(end(func(e *End) { e.ServerPort, e.Time = 2, at(10*time.Minute) }))
	a.Add(end(func(e *End) { e.ServerPort, e.Time = 3, at(10*time.Minute) }))
	_, _ = a.Collect(at(10 * time.Minute))
	a.Add(end(func(e *End) { e.ServerPort, e.Time = 4, at(11*time.Minute) }))
	md, _ = a.Collect(at(11 * time.Minute))
	ps = points(md)
	assert.EqualValues(t, 100, total(ps, MetricIO, func(p point) bool {
		return p.attrs[AttrServerPort] == int64(4) && p.attrs[AttrNetworkIODirection] == "transmit"
	}), "port 4's own io series")
}

func record(kv map[string]any) pcommon.Map {
	m := pcommon.NewMap()
	if err := m.FromRaw(kv); err != nil {
		panic(err) // a test's own literal
	}
	return m
}

func TestFurtherAttributesAndPrefixes(t *testing.T) {
	set := settings()
	set.Attributes = []string{"network.peer.address", "process.executable.name", "netflow.destination.domains"}
	set.IPv4Prefix, set.IPv6Prefix = 24, 64
	a := New(set)
	for _, r := range []map[string]any{
		{"network.peer.address": "10.1.2.3", "process.executable.name": "curl", "netflow.destination.domains": []any{"a.example.com"}},
		{"network.peer.address": "10.1.2.200", "process.executable.name": "curl", "netflow.destination.domains": []any{"a.example.com"}},
		{"network.peer.address": "10.1.3.1", "process.executable.name": "curl", "netflow.destination.domains": []any{"a.example.com"}},
		{"network.peer.address": "2001:db8:0:1::1", "process.executable.name": "curl", "netflow.destination.domains": []any{}},
		{"network.peer.address": "2001:db8:0:1::2", "process.executable.name": "curl", "netflow.destination.domains": []any{}},
		{"network.peer.address": "10.1.2.4", "netflow.destination.domains": []any{"a.example.com"}}, // no process
		{"network.peer.address": "not an address", "process.executable.name": "curl", "netflow.destination.domains": []any{}},
	} {
		a.Add(end(func(e *End) { e.Record = record(r) }))
	}
	md, _ := a.Collect(at(time.Second))
	got := map[string]int64{}
	for _, p := range points(md) {
		if p.metric == MetricConnections {
			got[fmt.Sprint(p.attrs["network.peer.address"], " ", p.attrs["process.executable.name"], " ", p.attrs["netflow.destination.domains"])] += p.value
		}
	}
	assert.Equal(t, map[string]int64{
		"10.1.2.0/24 curl [a.example.com]":  2,
		"10.1.3.0/24 curl [a.example.com]":  1,
		"2001:db8:0:1::/64 curl []":         2,
		"10.1.2.0/24 <nil> [a.example.com]": 1,
		"not an address curl []":            1,
	}, got)
}

func TestWholeAddresses(t *testing.T) {
	set := settings()
	set.Attributes = []string{"network.peer.address"}
	a := New(set)
	a.Add(end(func(e *End) { e.Record = record(map[string]any{"network.peer.address": "10.1.2.3"}) }))
	a.Add(end(func(e *End) { e.Record = record(map[string]any{"network.peer.address": "10.1.2.4"}) }))
	assert.Equal(t, 2, a.Series())
	md, _ := a.Collect(at(time.Second))
	for _, p := range points(md) {
		assert.Contains(t, []any{"10.1.2.3", "10.1.2.4"}, p.attrs["network.peer.address"])
	}
}

// Series unseen for the expiry go; one that comes back starts over, with a
// new start time, as cumulative points must.
func TestExpiryCumulative(t *testing.T) {
	set := settings()
	set.Expiry = time.Minute
	a := New(set)
	a.Add(end(func(e *End) { e.Container = "gone" }))
	a.Add(end(func(e *End) { e.Time = at(50 * time.Second); e.ServerPort = 80 }))

	md, _ := a.Collect(at(10 * time.Second))
	assert.Equal(t, 2, md.ResourceMetrics().Len())
	md, _ = a.Collect(at(70 * time.Second)) // the first is 70 s old, the second 20 s
	ps := points(md)
	assert.EqualValues(t, 1, total(ps, MetricConnections, nil))
	assert.Equal(t, 1, a.Series())
	assert.Len(t, a.resources, 1, "the container's resource went with its last series")

	a.Add(end(func(e *End) { e.Container, e.Time = "gone", at(80*time.Second) }))
	md, _ = a.Collect(at(90 * time.Second))
	for _, p := range points(md) {
		if p.metric == MetricConnections && p.resource[AttrContainerID] == "gone" {
			assert.EqualValues(t, 1, p.value, "started over")
			assert.Equal(t, at(80*time.Second), p.start)
		}
	}
}

func TestDelta(t *testing.T) {
	set := settings()
	set.Temporality = Delta
	set.Expiry = time.Minute
	a := New(set)
	a.Add(end())
	a.Add(end(func(e *End) { e.ServerPort = 80 }))
	md, _ := a.Collect(at(10 * time.Second))
	ps := points(md)
	assert.EqualValues(t, 2, total(ps, MetricConnections, nil))
	for _, p := range ps {
		assert.Equal(t, t0, p.start)
	}
	assert.Equal(t, pmetric.AggregationTemporalityDelta, md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Sum().AggregationTemporality())

	a.Add(end(func(e *End) { e.Time = at(15 * time.Second) }))
	a.Add(end(func(e *End) { e.Time = at(16 * time.Second) }))
	md, _ = a.Collect(at(20 * time.Second))
	ps = points(md)
	assert.Equal(t, 1, seriesOf(ps, MetricConnections), "only the series that changed")
	assert.EqualValues(t, 2, total(ps, MetricConnections, nil))
	assert.EqualValues(t, 200, total(ps, MetricIO, func(p point) bool { return p.attrs[AttrNetworkIODirection] == "transmit" }))
	for _, p := range ps {
		assert.Equal(t, at(10*time.Second), p.start, "from the last collection")
	}

	md, n := a.Collect(at(30 * time.Second))
	assert.Zero(t, n)
	assert.Zero(t, md.ResourceMetrics().Len())
	a.Collect(at(90 * time.Second))
	assert.Zero(t, a.Series(), "expired")
}

func TestTemporalityText(t *testing.T) {
	var tm Temporality
	require.NoError(t, tm.UnmarshalText([]byte("delta")))
	assert.Equal(t, Delta, tm)
	require.NoError(t, tm.UnmarshalText([]byte("cumulative")))
	assert.Equal(t, Cumulative, tm)
	require.ErrorContains(t, tm.UnmarshalText([]byte("Delta")), `"Delta" is not cumulative or delta`)
	b, err := Delta.MarshalText()
	require.NoError(t, err)
	assert.Equal(t, "delta", string(b))
}

// Adding to existing series allocates nothing, with further attributes and
// prefixes too.
func TestAddAllocatesNothing(t *testing.T) {
	set := settings()
	set.Attributes = []string{"network.peer.address", "process.executable.name"}
	set.IPv4Prefix = 24
	a := New(set)
	ends := []*End{
		end(func(e *End) {
			e.Record = record(map[string]any{"network.peer.address": "10.0.0.1", "process.executable.name": "curl"})
		}),
		end(func(e *End) {
			e.Container = "c1"
			e.Record = record(map[string]any{"network.peer.address": "10.0.0.2"})
		}),
	}
	for _, e := range ends {
		a.Add(e)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, e := range ends {
			a.Add(e)
		}
	})
	assert.Zero(t, allocs)
}
