//go:build linux

package receiver

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/connmetrics"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/churn"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/otlpsink"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// metricsTestConfig is a receiver with a small ring buffer and a short
// metrics interval (shorter than validation allows: tests build Config
// directly).
func metricsTestConfig(cgroup string) Config {
	m := defaultMetricsConfig()
	m.Interval = 100 * time.Millisecond
	return Config{CgroupPath: cgroup, RingBufferSize: 1 << 16, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond, Metrics: m}
}

// latestTotal sums a metric over the last points the sink took: with
// cumulative temporality, the totals.
func latestTotal(sink *consumertest.MetricsSink, name string) int64 {
	all := sink.AllMetrics()
	if len(all) == 0 {
		return 0
	}
	var n int64
	otlpsink.ForEachMetric(all[len(all)-1], func(_ pcommon.Resource, m pmetric.Metric) {
		if m.Name() != name {
			return
		}
		switch m.Type() {
		case pmetric.MetricTypeSum:
			for i := range m.Sum().DataPoints().Len() {
				n += m.Sum().DataPoints().At(i).IntValue()
			}
		case pmetric.MetricTypeHistogram:
			for i := range m.Histogram().DataPoints().Len() {
				n += int64(m.Histogram().DataPoints().At(i).Count())
			}
		}
	})
	return n
}

// A logs consumer that refuses every batch (as a memory_limiter does) or
// never returns: the read loop goes on reading for the metrics, which count
// every socket end that reaches user space, of a churn several times the
// ring buffer's size; the log batches that found no room are counted as
// dropped. A read loop held up by the logs would lose most ends beyond the
// ring's size in the kernel.
func TestMetricsCountEveryEndWhileLogsAreRefused(t *testing.T) {
	testenv.RequireRoot(t)
	for _, mode := range []string{"retryable", "block"} {
		t.Run(mode, func(t *testing.T) {
			cg := testnet.NewCgroup(t)
			logs := newGate(mode)
			metrics := new(consumertest.MetricsSink)
			cfg := metricsTestConfig(cg.Path) // the smallest ring: 64 KiB
			r, tel := startWithConsumers(t, cfg, Consumers{Logs: logs, Metrics: metrics})

			var mu sync.Mutex
			made := map[uint64]struct{}{}
			ringRecords := cfg.RingBufferSize / bpf.EventSize
			var res churn.Result
			for try := 0; int(2*res.Conns) < 4*ringRecords; try++ {
				require.Less(t, try, 30, "the churn is too slow: %d connections", res.Conns)
				cg.Run(t, func() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					defer cancel()
					r, err := churn.Run(ctx, churn.Options{Clients: 2, OnSocket: func(c uint64) {
						mu.Lock()
						made[c] = struct{}{}
						mu.Unlock()
					}})
					require.NoError(t, err)
					res.Conns += r.Conns
				})
			}
			mu.Lock()
			sockets := int64(len(made))
			mu.Unlock()
			// Every end that reached user space: those the kernel could
			// not write (lost, not retried later) did not.
			var ends, lost int64
			require.Eventually(t, func() bool {
				lost = counter(t, tel, "otelcol_netflowtcpend_records_lost") - counter(t, tel, "otelcol_netflowtcpend_records_retried")
				ends = sockets - lost
				return latestTotal(metrics, connmetrics.MetricConnections) == ends
			}, 30*time.Second, 50*time.Millisecond, "every end counted while the logs are refused: %d sockets, %d lost, %d counted",
				sockets, lost, latestTotal(metrics, connmetrics.MetricConnections))
			// A read loop held up by the logs would lose all but the ring's
			// records: at least three quarters of the churn, which made
			// four rings' worth or more. One that keeps reading loses only
			// what a burst puts past it while it waits for a CPU (on a
			// fast machine, 2 CPUs shared with the churn: about 1%).
			assert.Less(t, lost, sockets/2, "the read loop kept reading (%d sockets, %d lost; a %d-record ring)", sockets, lost, ringRecords)
			assert.Positive(t, counter(t, tel, "otelcol_netflowtcpend_records_dropped"), "log batches beyond the queue are dropped")
			assert.Zero(t, logs.LogRecordCount(), "the logs consumer took nothing")
			calls, _ := logs.stats()
			assert.Positive(t, calls)

			// The logs consumer still refuses: Shutdown gives up on the
			// queued batches at its deadline, after the last points.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			require.ErrorIs(t, r.Shutdown(ctx), context.DeadlineExceeded)
			assert.Equal(t, ends, latestTotal(metrics, connmetrics.MetricConnections), "the last points, at shutdown")
		})
	}
}

// The receiver alone in a metrics pipeline: no log records are made,
// unless metrics.attributes needs theirs; points carry the attributes
// asked for, with peer addresses grouped into prefixes.
func TestMetricsAlone(t *testing.T) {
	testenv.RequireRoot(t)
	cg := testnet.NewCgroup(t)
	metrics := new(consumertest.MetricsSink)
	cfg := metricsTestConfig(cg.Path)
	cfg.Metrics.Attributes = []string{attrPeerAddress.String(), attrProcessExecutable.String()}
	cfg.Metrics.AddressPrefix.IPv4 = 8
	r, _ := startWithConsumers(t, cfg, Consumers{Metrics: metrics})

	const n = 3
	cg.Run(t, func() {
		ln, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
		require.NoError(t, err)
		defer ln.Close()
		for range n {
			client, err := testnet.Dial(testnet.AddrPort(ln.Addr()))
			require.NoError(t, err)
			server, err := ln.AcceptTCP()
			require.NoError(t, err)
			require.NoError(t, client.Close())
			require.NoError(t, server.Close())
		}
	})
	require.Eventually(t, func() bool { return latestTotal(metrics, connmetrics.MetricConnections) == 2*n },
		10*time.Second, 50*time.Millisecond)
	require.NoError(t, r.Shutdown(context.Background()))

	last := metrics.AllMetrics()[len(metrics.AllMetrics())-1]
	otlpsink.ForEachMetric(last, func(res pcommon.Resource, m pmetric.Metric) {
		host, _ := res.Attributes().Get(AttrHostName)
		assert.NotEmpty(t, host.Str())
		if m.Name() != connmetrics.MetricConnections {
			return
		}
		for i := range m.Sum().DataPoints().Len() {
			a := m.Sum().DataPoints().At(i).Attributes().AsRaw()
			assert.Equal(t, "127.0.0.0/8", a[attrPeerAddress.String()])
			assert.Contains(t, []any{"incoming", "outgoing"}, a[attrDirection.String()])
			if a[attrDirection.String()] == "outgoing" {
				// The accepted socket has no owner: it neither sent nor read.
				assert.NotEmpty(t, a[attrProcessExecutable.String()], "the test's own executable")
			}
		}
	})
}
