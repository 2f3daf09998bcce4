//go:build linux

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

// The receiver alone in a metrics pipeline, exported by the contrib
// prometheus exporter, scraped as a Prometheus server would: the names
// and units Prometheus users see (_total, _bytes, _seconds), the labels,
// and the totals of the workload.
func TestPrometheusScrape(t *testing.T) {
	collectorBinary(t)
	testenv.RequireRoot(t)
	port, err := loadtest.FreePort()
	require.NoError(t, err)
	cg := testnet.NewCgroup(t)
	collector := startCollector(t, fmt.Sprintf(`
receivers:
  netflow_tcp_end:
    cgroup_path: %s
    metrics:
      interval: 1s
exporters:
  prometheus:
    endpoint: 127.0.0.1:%d
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [netflow_tcp_end]
      exporters: [prometheus]
`, cg.Path, port))

	w := runWorkload(t, cg, 3)
	want := w.expect(1)
	var s scrape
	require.Eventually(t, func() bool {
		s = scrapeMetrics(t, port)
		return s.sum("netflow_tcp_connections_total", nil) == want.total()
	}, 30*time.Second, 200*time.Millisecond, "the scrape counts every end")

	for name, typ := range map[string]string{
		"netflow_tcp_connections_total":     "counter",
		"netflow_tcp_io_bytes_total":        "counter",
		"netflow_tcp_retransmissions_total": "counter",
		"netflow_tcp_duration_seconds":      "histogram",
		"netflow_tcp_rtt_seconds":           "histogram",
	} {
		assert.Equal(t, typ, s.types[name], "# TYPE of %s", name)
	}
	var transmit, receive int64
	for _, c := range want {
		transmit += c.transmit
		receive += c.receive
	}
	assert.Equal(t, transmit, s.sum("netflow_tcp_io_bytes_total", map[string]string{"network_io_direction": "transmit"}))
	assert.Equal(t, receive, s.sum("netflow_tcp_io_bytes_total", map[string]string{"network_io_direction": "receive"}))
	assert.Equal(t, int64(w.refused), s.sum("netflow_tcp_connections_total", map[string]string{
		"netflow_direction": "outgoing", "netflow_end_reason": "rst", "error_type": "connection_refused",
		"server_port": strconv.Itoa(w.refusedPort), "network_type": "ipv4"}))
	assert.Equal(t, int64(w.graceful), s.sum("netflow_tcp_connections_total", map[string]string{
		"netflow_direction": "incoming", "netflow_end_reason": "fin", "server_port": strconv.Itoa(w.gracefulPort)}))
	established := want.total() - int64(w.refused)
	assert.Equal(t, established, s.sum("netflow_tcp_rtt_seconds_count", nil))
	assert.Equal(t, established, s.sum("netflow_tcp_duration_seconds_bucket", map[string]string{"le": "+Inf", "error_type": ""}))
	assert.Equal(t, established, s.sum("netflow_tcp_duration_seconds_bucket", map[string]string{"le": "3600", "error_type": ""}),
		"every connection of the test is shorter than an hour")
	assert.Positive(t, s.sum("netflow_tcp_rtt_seconds_bucket", map[string]string{"le": "0.001"}), "loopback RTTs are under a millisecond")
	stopCollector(t, collector)
}

// scrape is one Prometheus text exposition.
type scrape struct {
	types   map[string]string // # TYPE lines
	samples []promSample
}

type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

// sum adds the values of the samples of name whose labels include want
// (a label wanted empty must be absent); the samples here are counts.
func (s scrape) sum(name string, want map[string]string) int64 {
	var total float64
next:
	for _, x := range s.samples {
		if x.name != name {
			continue
		}
		for k, v := range want {
			if x.labels[k] != v {
				continue next
			}
		}
		total += x.value
	}
	return int64(math.Round(total))
}

// scrapeMetrics reads http://127.0.0.1:port/metrics in the text format,
// which is what a Prometheus server asks for by default.
func scrapeMetrics(t *testing.T, port int) scrape {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	s := scrape{types: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(rest, " "); ok {
				s.types[name] = typ
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s.samples = append(s.samples, parseSample(t, line))
	}
	return s
}

// parseSample parses `name{a="x",b="y"} value`; label values here have
// no escaped quotes.
func parseSample(t *testing.T, line string) promSample {
	t.Helper()
	x := promSample{labels: map[string]string{}}
	var rest string
	if i := strings.IndexByte(line, '{'); i >= 0 {
		x.name = line[:i]
		j := strings.LastIndexByte(line, '}')
		require.Greater(t, j, i, "sample line %q", line)
		for _, kv := range strings.Split(line[i+1:j], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				x.labels[k] = strings.Trim(v, `"`)
			}
		}
		rest = strings.TrimSpace(line[j+1:])
	} else {
		x.name, rest, _ = strings.Cut(line, " ")
	}
	value, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	v, err := strconv.ParseFloat(value, 64)
	require.NoError(t, err, "sample line %q", line)
	x.value = v
	return x
}
