//go:build linux

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/otlpsink"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

// The built collector running the shipped examples/metrics.yaml (a logs
// and a metrics pipeline, each exporting over OTLP/HTTP) to endpoints of
// the test, watching a cgroup where the
// test makes connections it counts itself: graceful ones to one server
// port, ones ended by a RST to another, and connects refused by a closed
// port. The metric totals equal the workload's counts per direction, end
// reason, error.type and server port, and its bytes per
// network.io.direction; they equal the log records' sums; and they stay
// exact while the logs endpoint refuses everything (400) and while a
// memory_limiter in the logs pipeline refuses every batch.

func TestMetricsMatchTheWorkload(t *testing.T) {
	collectorBinary(t)
	testenv.RequireRoot(t)
	logs, metrics := newLogSink(t), newMetricSink(t)
	cg := testnet.NewCgroup(t)
	collector := startMetricsCollector(t, cg.Path, logs.addr, metrics.addr)

	w := runWorkload(t, cg, 5)
	want := w.expect(1)
	require.Eventually(t, func() bool {
		return metrics.total(metricConnections, nil) == want.total() && logs.count() == want.total()
	}, 30*time.Second, 100*time.Millisecond, "every end counted and logged: %d ends, metrics %d, logs %d",
		want.total(), metrics.total(metricConnections, nil), logs.count())
	time.Sleep(1500 * time.Millisecond) // another interval: nothing more comes
	want.check(t, metrics)
	logs.matches(t, metrics)

	// The logs endpoint now refuses everything; metrics go on, exactly.
	logs.refuse.Store(true)
	w2 := runWorkload(t, cg, 5)
	want = merge(w.expect(1), w2.expect(1))
	require.Eventually(t, func() bool { return metrics.total(metricConnections, nil) == want.total() },
		30*time.Second, 100*time.Millisecond, "every end counted while logs are refused")
	time.Sleep(1500 * time.Millisecond)
	want.check(t, metrics)
	assert.Equal(t, w.expect(1).total(), logs.count(), "no log record accepted while refusing")
	assert.Positive(t, logs.refused.Load(), "the logs exporter tried")
	stopCollector(t, collector)
}

// A memory_limiter in the logs pipeline that refuses every batch (its
// limit is below any collector's heap): the receiver is told to back off
// its logs, and the metrics still count every end.
func TestMetricsExactWhileMemoryLimiterRefusesLogs(t *testing.T) {
	collectorBinary(t)
	testenv.RequireRoot(t)
	logs, metrics := newLogSink(t), newMetricSink(t)
	cg := testnet.NewCgroup(t)
	collector := startMetricsCollector(t, cg.Path, logs.addr, metrics.addr,
		"yaml:processors::memory_limiter::check_interval: 100ms",
		"yaml:processors::memory_limiter::limit_mib: 2",
		"yaml:processors::memory_limiter::spike_limit_mib: 1")

	w := runWorkload(t, cg, 20)
	want := w.expect(1)
	require.Eventually(t, func() bool { return metrics.total(metricConnections, nil) == want.total() },
		30*time.Second, 100*time.Millisecond, "every end counted while the memory_limiter refuses logs")
	time.Sleep(1500 * time.Millisecond)
	want.check(t, metrics)
	assert.Zero(t, logs.count(), "the memory_limiter refused every log record")
	assert.Eventually(t, func() bool {
		return strings.Contains(collector.Log(), "reads on for the metrics pipeline")
	}, 15*time.Second, 100*time.Millisecond, "the receiver says it reads on for the metrics; its log:\n%s", collector.Log())
	// Not stopped with SIGTERM: the receiver retries the refused log
	// batches until Shutdown's deadline, and the collector gives its
	// Shutdown none. The cleanup kills it.
}

// max_series bounds the series of each metric under many distinct server
// ports: at most that many, plus one overflow point, with exact totals.
func TestMetricsMaxSeriesHolds(t *testing.T) {
	collectorBinary(t)
	testenv.RequireRoot(t)
	logs, metrics := newLogSink(t), newMetricSink(t)
	cg := testnet.NewCgroup(t)
	const maxSeries, ports, perPort = 10, 40, 3
	collector := startMetricsCollector(t, cg.Path, logs.addr, metrics.addr,
		fmt.Sprintf("yaml:receivers::netflow_tcp_end::metrics::max_series: %d", maxSeries))

	var bytes int64
	cg.Run(t, func() {
		for range ports {
			ln, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
			require.NoError(t, err)
			for range perPort {
				client, server := connect(t, ln)
				bytes += graceful(t, client, server, 10, 20)
			}
			require.NoError(t, ln.Close())
		}
	})
	ends := int64(2 * ports * perPort)
	require.Eventually(t, func() bool { return metrics.total(metricConnections, nil) == ends },
		30*time.Second, 100*time.Millisecond, "every end counted")
	time.Sleep(1500 * time.Millisecond)
	for _, m := range []string{metricConnections, metricDuration, metricRetransmissions} {
		assert.Equal(t, maxSeries, metrics.series(m, func(p metricPoint) bool { return p.attrs["otel.metric.overflow"] == nil }), m)
		assert.Equal(t, 1, metrics.series(m, func(p metricPoint) bool { return p.attrs["otel.metric.overflow"] == true }), m)
	}
	assert.Equal(t, maxSeries, metrics.series(metricIO, func(p metricPoint) bool { return p.attrs["otel.metric.overflow"] == nil }),
		"transmit and receive of each attribute set, as long as they fit")
	assert.Equal(t, 2, metrics.series(metricIO, func(p metricPoint) bool { return p.attrs["otel.metric.overflow"] == true }),
		"the overflow's transmit and receive")
	assert.Equal(t, ends, metrics.total(metricConnections, nil))
	assert.Equal(t, ends, metrics.total(metricDuration, nil))
	assert.Equal(t, bytes, metrics.total(metricIO, ioDirection("transmit")))
	assert.Equal(t, bytes, metrics.total(metricIO, ioDirection("receive")))
	assert.Positive(t, metrics.total(metricConnections, func(p metricPoint) bool { return p.attrs["otel.metric.overflow"] == true }))
	stopCollector(t, collector)
	assert.Contains(t, collector.Log(), "metrics.max_series reached", "the receiver says so")
}

const (
	metricConnections     = "netflow.tcp.connections"
	metricIO              = "netflow.tcp.io"
	metricDuration        = "netflow.tcp.duration"
	metricRTT             = "netflow.tcp.rtt"
	metricRetransmissions = "netflow.tcp.retransmissions"
)

// startMetricsCollector runs the shipped examples/metrics.yaml watching
// cgroup, exporting logs and metrics to the test's endpoints, with 1 s
// metric intervals and the overrides given (yaml: configurations).
func startMetricsCollector(t *testing.T, cgroup, logsAddr, metricsAddr string, overrides ...string) *loadtest.Collector {
	t.Helper()
	args := []string{"--config", examplePath(t, "metrics.yaml"),
		"--config", "yaml:receivers::netflow_tcp_end::cgroup_path: " + cgroup,
		"--config", "yaml:receivers::netflow_tcp_end::metrics::interval: 1s",
		"--config", "yaml:processors::batch::timeout: 100ms",
		"--config", "yaml:exporters::otlp_http/logs::retry_on_failure::initial_interval: 100ms",
		"--config", "yaml:service::telemetry::metrics::level: none"}
	for _, o := range overrides {
		args = append(args, "--config", o)
	}
	return startCommand(t, nil, exec.Command(collectorBinary(t), args...),
		"LOGS_ENDPOINT=http://"+logsAddr, "METRICS_ENDPOINT=http://"+metricsAddr)
}

// workload is what runWorkload did, counted by the test itself.
type workload struct {
	graceful, reset, refused int // connections of each kind
	gracefulPort, resetPort  int
	refusedPort              int
}

// Bytes of each exchange.
const (
	gracefulRequest, gracefulResponse = 300, 700
	resetRequest, resetResponse       = 100, 200
)

// runWorkload makes, with sockets in cg, n connections to one server that
// exchange a request and a response and close (the client first, with a
// FIN), n to another that the client ends with a RST after its exchange,
// and n connects to a port where nothing listens.
func runWorkload(t *testing.T, cg *testnet.Cgroup, n int) workload {
	t.Helper()
	w := workload{graceful: n, reset: n, refused: n}
	cg.Run(t, func() {
		a, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
		require.NoError(t, err)
		defer a.Close()
		b, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
		require.NoError(t, err)
		defer b.Close()
		closed, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
		require.NoError(t, err)
		w.gracefulPort, w.resetPort = int(testnet.AddrPort(a.Addr()).Port()), int(testnet.AddrPort(b.Addr()).Port())
		w.refusedPort = int(testnet.AddrPort(closed.Addr()).Port())
		require.NoError(t, closed.Close())

		for range n {
			client, server := connect(t, a)
			graceful(t, client, server, gracefulRequest, gracefulResponse)
		}
		for range n {
			client, server := connect(t, b)
			request(t, client, server, resetRequest, resetResponse)
			require.NoError(t, client.SetLinger(0))
			require.NoError(t, client.Close()) // a RST
			_, err = io.Copy(io.Discard, server)
			require.Error(t, err, "the server sees the reset")
			require.NoError(t, server.Close())
		}
		for range n {
			_, err := testnet.Dial(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(w.refusedPort)))
			require.ErrorContains(t, err, "connection refused")
		}
	})
	return w
}

// connect makes a connection to ln and accepts it.
func connect(t *testing.T, ln *net.TCPListener) (client, server *net.TCPConn) {
	t.Helper()
	client, err := testnet.Dial(testnet.AddrPort(ln.Addr()))
	require.NoError(t, err)
	server, err = ln.AcceptTCP()
	require.NoError(t, err)
	return client, server
}

// request sends req bytes from client to server and resp bytes back,
// each read in full.
func request(t *testing.T, client, server *net.TCPConn, req, resp int) {
	t.Helper()
	for _, leg := range []struct {
		from, to *net.TCPConn
		n        int
	}{{client, server, req}, {server, client, resp}} {
		_, err := leg.from.Write(make([]byte, leg.n))
		require.NoError(t, err)
		_, err = io.ReadFull(leg.to, make([]byte, leg.n))
		require.NoError(t, err)
	}
}

// graceful exchanges a request and a response, then the client closes
// and the server reads to the end and closes. It returns the bytes each
// direction carried in all (req + resp): what both sockets sent, and what
// both received.
func graceful(t *testing.T, client, server *net.TCPConn, req, resp int) int64 {
	t.Helper()
	request(t, client, server, req, resp)
	require.NoError(t, client.Close())
	_, err := io.Copy(io.Discard, server)
	require.NoError(t, err)
	require.NoError(t, server.Close())
	return int64(req + resp)
}

// expectation is the metric totals of a workload, per series of the
// default attributes.
type expectation map[seriesID]counts

type seriesID struct {
	direction, reason, errorType string
	port                         int
}

type counts struct{ conns, transmit, receive int64 }

// expect is what w should count, times rounds.
func (w workload) expect(rounds int64) expectation {
	n := func(k int) int64 { return int64(k) * rounds }
	return expectation{
		{"outgoing", "fin", "", w.gracefulPort}:                  {n(w.graceful), n(w.graceful * gracefulRequest), n(w.graceful * gracefulResponse)},
		{"incoming", "fin", "", w.gracefulPort}:                  {n(w.graceful), n(w.graceful * gracefulResponse), n(w.graceful * gracefulRequest)},
		{"outgoing", "rst", "", w.resetPort}:                     {n(w.reset), n(w.reset * resetRequest), n(w.reset * resetResponse)},
		{"incoming", "rst", "", w.resetPort}:                     {n(w.reset), n(w.reset * resetResponse), n(w.reset * resetRequest)},
		{"outgoing", "rst", "connection_refused", w.refusedPort}: {n(w.refused), 0, 0},
	}
}

func merge(es ...expectation) expectation {
	out := expectation{}
	for _, e := range es {
		for k, c := range e {
			o := out[k]
			out[k] = counts{o.conns + c.conns, o.transmit + c.transmit, o.receive + c.receive}
		}
	}
	return out
}

func (e expectation) total() int64 {
	var n int64
	for _, c := range e {
		n += c.conns
	}
	return n
}

// check compares the sink's latest points with e, series by series.
func (e expectation) check(t *testing.T, s *metricSink) {
	t.Helper()
	got := expectation{}
	for _, p := range s.points() {
		id := seriesID{direction: str(p.attrs["netflow.direction"]), reason: str(p.attrs["netflow.end.reason"]),
			errorType: str(p.attrs["error.type"])}
		if port, ok := p.attrs["server.port"].(int64); ok {
			id.port = int(port)
		}
		assert.Equal(t, "ipv4", p.attrs["network.type"], "%v", p.attrs)
		c := got[id]
		switch p.metric {
		case metricConnections:
			c.conns += p.value
		case metricIO:
			if p.attrs["network.io.direction"] == "transmit" {
				c.transmit += p.value
			} else {
				c.receive += p.value
			}
		}
		got[id] = c
	}
	assert.Equal(t, e, got)
	// Every established connection has a duration and an RTT; the
	// refused connects have no RTT sample.
	established := e.total() - s.total(metricConnections, func(p metricPoint) bool { return p.attrs["error.type"] != nil })
	assert.Equal(t, established, s.total(metricRTT, func(p metricPoint) bool { return p.attrs["error.type"] == nil }))
	assert.Equal(t, established, s.total(metricDuration, func(p metricPoint) bool { return p.attrs["error.type"] == nil }))
	assert.Zero(t, s.total(metricRetransmissions, nil), "nothing is retransmitted on loopback")
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func ioDirection(d string) func(metricPoint) bool {
	return func(p metricPoint) bool { return p.attrs["network.io.direction"] == d }
}

// metricSink is an OTLP/HTTP metrics endpoint that keeps the latest point
// of every series (cumulative points: the latest is the total).
type metricSink struct {
	addr string

	mu     sync.Mutex
	latest map[string]metricPoint
}

type metricPoint struct {
	metric, unit string
	resource     map[string]any
	attrs        map[string]any
	start, time  pcommon.Timestamp
	value        int64 // sums
	count        uint64
}

func newMetricSink(t *testing.T) *metricSink {
	t.Helper()
	s := &metricSink{latest: map[string]metricPoint{}}
	s.addr = serve(t, otlpsink.MetricsHandler(s.consume))
	return s
}

func (s *metricSink) consume(md pmetric.Metrics) {
	s.mu.Lock()
	defer s.mu.Unlock()
	otlpsink.ForEachMetric(md, func(res pcommon.Resource, m pmetric.Metric) {
		keep := func(p metricPoint) {
			key := p.metric + fmt.Sprint(sortedMap(p.resource), sortedMap(p.attrs))
			if old, ok := s.latest[key]; !ok || old.time <= p.time {
				s.latest[key] = p
			}
		}
		switch m.Type() {
		case pmetric.MetricTypeSum:
			dps := m.Sum().DataPoints()
			for i := range dps.Len() {
				dp := dps.At(i)
				keep(metricPoint{metric: m.Name(), unit: m.Unit(), resource: res.Attributes().AsRaw(), attrs: dp.Attributes().AsRaw(),
					start: dp.StartTimestamp(), time: dp.Timestamp(), value: dp.IntValue()})
			}
		case pmetric.MetricTypeHistogram:
			dps := m.Histogram().DataPoints()
			for i := range dps.Len() {
				dp := dps.At(i)
				keep(metricPoint{metric: m.Name(), unit: m.Unit(), resource: res.Attributes().AsRaw(), attrs: dp.Attributes().AsRaw(),
					start: dp.StartTimestamp(), time: dp.Timestamp(), count: dp.Count()})
			}
		}
	})
}

func sortedMap(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%v;", k, m[k])
	}
	return b.String()
}

func (s *metricSink) points() []metricPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]metricPoint, 0, len(s.latest))
	for _, p := range s.latest {
		out = append(out, p)
	}
	return out
}

// total sums a metric's values (sums) or counts (histograms) over its
// series that match.
func (s *metricSink) total(metric string, match func(metricPoint) bool) int64 {
	var n int64
	for _, p := range s.points() {
		if p.metric == metric && (match == nil || match(p)) {
			n += p.value + int64(p.count)
		}
	}
	return n
}

func (s *metricSink) series(metric string, match func(metricPoint) bool) int {
	n := 0
	for _, p := range s.points() {
		if p.metric == metric && (match == nil || match(p)) {
			n++
		}
	}
	return n
}

// logSink is an OTLP/HTTP logs endpoint that keeps the records, or
// refuses every request with 400 (a permanent error: the exporter drops
// the batch).
type logSink struct {
	addr    string
	refuse  atomic.Bool
	refused atomic.Int64

	mu      sync.Mutex
	records []plog.LogRecord
}

func newLogSink(t *testing.T) *logSink {
	t.Helper()
	s := &logSink{}
	accept := otlpsink.Handler(func(ld plog.Logs) {
		s.mu.Lock()
		defer s.mu.Unlock()
		otlpsink.ForEach(ld, func(_ pcommon.Resource, lr plog.LogRecord) { s.records = append(s.records, lr) })
	})
	s.addr = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.refuse.Load() {
			s.refused.Add(1)
			http.Error(w, "refused by the test", http.StatusBadRequest)
			return
		}
		accept.ServeHTTP(w, r)
	}))
	return s
}

func (s *logSink) count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.records))
}

// matches compares the metrics with the sums over the log records: one
// end per record, and their bytes, per series of the default attributes.
func (s *logSink) matches(t *testing.T, m *metricSink) {
	t.Helper()
	s.mu.Lock()
	fromLogs := expectation{}
	for _, lr := range s.records {
		a := lr.Attributes().AsRaw()
		id := seriesID{direction: str(a["netflow.direction"]), reason: str(a["netflow.end.reason"]), errorType: str(a["error.type"])}
		if port, ok := a["server.port"].(int64); ok {
			id.port = int(port)
		}
		c := fromLogs[id]
		sent, _ := a["netflow.bytes.sent"].(int64)
		received, _ := a["netflow.bytes.received"].(int64)
		fromLogs[id] = counts{c.conns + 1, c.transmit + sent, c.receive + received}
	}
	s.mu.Unlock()
	fromLogs.check(t, m)
}

// serve serves h on a loopback port until the test ends; it returns the
// address. The listener is made outside the test cgroups, so the
// collector's exports are not watched.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
