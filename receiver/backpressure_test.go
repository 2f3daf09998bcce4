//go:build linux

package receiver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/churn"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/otlpsink"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// gate is a next consumer that fails in one of three ways until opened:
// it blocks, refuses with a retryable error, or refuses permanently.
type gate struct {
	consumertest.LogsSink
	mode    string // "block", "retryable", "permanent"
	mu      sync.Mutex
	closed  bool
	opened  chan struct{}
	calls   int // calls while closed
	largest int // most records in one call while closed
	refused []plog.Logs
}

func newGate(mode string) *gate { return &gate{mode: mode, closed: true, opened: make(chan struct{})} }

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = false
	close(g.opened)
}

func (g *gate) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	g.mu.Lock()
	closed := g.closed
	if closed {
		g.calls++
		g.largest = max(g.largest, ld.LogRecordCount())
		if g.mode != "block" { // a copy: the receiver may reuse what was refused
			c := plog.NewLogs()
			ld.CopyTo(c)
			g.refused = append(g.refused, c)
		}
	}
	g.mu.Unlock()
	if closed {
		switch g.mode {
		case "block":
			select {
			case <-g.opened:
			case <-ctx.Done():
				return ctx.Err()
			}
		case "retryable":
			return errors.New("the pipeline is full")
		default:
			return consumererror.NewPermanent(errors.New("the backend refuses these records"))
		}
	}
	return g.LogsSink.ConsumeLogs(ctx, ld)
}

func (g *gate) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (g *gate) stats() (calls, largest int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls, g.largest
}

// While the next consumer blocks, refuses or drops, connections go on at
// their own pace: the kernel never waits for the receiver. The receiver
// holds one batch and the ring buffer the rest; every connection end that
// fits nowhere is counted as lost while it happens, and every socket is, in
// the end, either delivered or counted (lost, or dropped by a permanent
// error). When the consumer takes records again, they flow without a
// restart.
func TestBackpressureFromTheNextConsumer(t *testing.T) {
	testenv.RequireRoot(t)
	for _, mode := range []string{"block", "retryable", "permanent"} {
		t.Run(mode, func(t *testing.T) {
			cg := testnet.NewCgroup(t)
			next := newGate(mode)
			cfg := Config{CgroupPath: cg.Path, RingBufferSize: 1 << 16, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond}
			r, tel := startWithTelemetry(t, cfg, next)

			var mu sync.Mutex
			made := map[uint64]struct{}{}
			var churnErrors []string // the first error of each run that had any
			runChurn := func(d time.Duration) churn.Result {
				var res churn.Result
				var err error
				// The whole test process is in the cgroup meanwhile, and
				// makes no socket but the churn's.
				cg.Run(t, func() {
					ctx, cancel := context.WithTimeout(context.Background(), d)
					defer cancel()
					res, err = churn.Run(ctx, churn.Options{Clients: 2, OnSocket: func(c uint64) {
						mu.Lock()
						made[c] = struct{}{}
						mu.Unlock()
					}})
				})
				require.NoError(t, err)
				if res.Errors > 0 {
					churnErrors = append(churnErrors, fmt.Sprintf("%d errors, first: %s", res.Errors, res.FirstError))
				}
				return res
			}

			// Several times the ends that the ring holds, however slow the
			// machine is today.
			ringRecords := cfg.RingBufferSize / bpf.EventSize
			var failing churn.Result
			for try := 0; 2*failing.Conns < int64(4*ringRecords); try++ {
				require.Less(t, try, 30, "the churn is too slow: %d connections in %d s", failing.Conns, try)
				res := runChurn(time.Second)
				failing.Conns += res.Conns
				failing.Seconds += res.Seconds
			}

			// Counted while the consumer still fails: the read loop reads
			// the kernel's counters every flush interval meanwhile.
			var lostWhileFailing int64
			if mode != "permanent" { // a permanent error does not hold the reader up
				require.Eventually(t, func() bool {
					lostWhileFailing = counter(t, tel, "otelcol_netflowtcpend_records_lost")
					return lostWhileFailing > 0
				}, 10*time.Second, 20*time.Millisecond, "losses are counted while the consumer fails")
			}
			calls, largest := next.stats()
			assert.LessOrEqual(t, largest, cfg.MaxBatchSize, "the receiver passes on one batch at a time")
			if mode == "block" {
				assert.Equal(t, 1, calls, "a blocked consumer is waited for, not called again")
			}
			delivered := len(next.AllLogs())
			assert.Zero(t, delivered, "nothing passed while the gate was closed")

			next.open()
			// What the receiver holds when the gate opens is one batch and
			// what waits in the ring: bounded by them, not by the churn.
			var heldBack int
			require.Eventually(t, func() bool {
				n := next.LogRecordCount()
				if n == heldBack && (n > 0 || mode == "permanent") { // dropped ones are gone
					return true
				}
				heldBack = n
				return false
			}, 10*time.Second, 200*time.Millisecond)
			if mode != "permanent" {
				assert.LessOrEqual(t, heldBack, ringRecords+cfg.MaxBatchSize,
					"after the gate opened, at most the ring's records and one batch arrive")
			}

			// Records flow again, without a restart.
			after := runChurn(300 * time.Millisecond)
			require.Positive(t, after.Conns)

			// Every socket is delivered once or counted.
			mu.Lock()
			defer mu.Unlock()
			var got map[uint64]int
			var lost, retried, dropped int64
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				got = cookies(next)
				lost = counter(t, tel, "otelcol_netflowtcpend_records_lost")
				retried = counter(t, tel, "otelcol_netflowtcpend_records_retried")
				dropped = counter(t, tel, "otelcol_netflowtcpend_records_dropped")
				if len(got)+int(lost-retried+dropped) == len(made) || time.Now().After(deadline) {
					break
				}
			}
			undelivered, unmade := cookieDiff(made, got)
			require.Equal(t, len(made), len(got)+int(lost-retried+dropped),
				"sockets made = delivered + lost - retried + dropped: %d delivered, %d lost - %d retried, %d dropped; "+
					"%d made and not delivered, %d delivered and not made; records of sockets not made, refused ones included: %v; "+
					"churn errors: %v; socket storage failures: %d",
				len(got), lost, retried, dropped, undelivered, unmade, recordsNotMade(next, made), churnErrors,
				counter(t, tel, "otelcol_netflowtcpend_socket_storage_failures"))
			for c, n := range got {
				_, ok := made[c]
				require.True(t, ok, "a record of a socket the churn did not make: %d", c)
				require.Equal(t, 1, n, "socket %d delivered %d times", c, n)
			}
			if mode == "permanent" {
				assert.Positive(t, dropped, "records refused permanently are counted as dropped")
			} else {
				assert.Zero(t, dropped, "retried, not dropped")
				assert.Positive(t, lost)
			}
			t.Logf("%s: %d connections while failing (%.0f/s), %d after; %d sockets: %d delivered, %d lost - %d retried, %d dropped; "+
				"%d lost counted before the gate opened; %d records held back and delivered after it opened",
				mode, failing.Conns, failing.Rate(), after.Conns, len(made), len(got), lost, retried, dropped, lostWhileFailing, heldBack)
			require.NoError(t, r.Shutdown(context.Background()))
		})
	}
}

// startWithTelemetry starts a receiver in a logs pipeline whose metrics
// the test reads.
func startWithTelemetry(t *testing.T, cfg Config, next consumer.Logs) (*Receiver, *componenttest.Telemetry) {
	t.Helper()
	return startWithConsumers(t, cfg, Consumers{Logs: next})
}

// startWithConsumers starts a receiver in the pipelines of next, whose
// metrics the test reads. The cleanup's Shutdown gives a consumer that
// still refuses 5 s.
func startWithConsumers(t *testing.T, cfg Config, next Consumers) (*Receiver, *componenttest.Telemetry) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	set := receiver.Settings{ID: component.NewID(metadata.Type), TelemetrySettings: tel.NewTelemetrySettings()}
	obsrecv, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID: set.ID, Transport: "ebpf", ReceiverCreateSettings: set,
	})
	require.NoError(t, err)
	r, err := New(&cfg, set.TelemetrySettings, obsrecv, next)
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background(), nil))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.Shutdown(ctx)
	})
	return r, tel
}

// cookieDiff counts the sockets made whose record was not delivered, and
// the sockets delivered that were not made.
func cookieDiff(made map[uint64]struct{}, got map[uint64]int) (undelivered, unmade int) {
	for c := range made {
		if got[c] == 0 {
			undelivered++
		}
	}
	for c := range got {
		if _, ok := made[c]; !ok {
			unmade++
		}
	}
	return undelivered, unmade
}

// recordsNotMade returns the attributes of the records of sockets not made,
// those the gate refused included, once per socket (a retried batch was
// refused more than once).
func recordsNotMade(sink *gate, made map[uint64]struct{}) []map[string]any {
	var out []map[string]any
	seen := map[uint64]bool{}
	sink.mu.Lock()
	refused := sink.refused
	sink.mu.Unlock()
	for _, ld := range append(refused, sink.AllLogs()...) {
		otlpsink.ForEach(ld, func(_ pcommon.Resource, lr plog.LogRecord) {
			v, _ := lr.Attributes().Get(attrSocketCookie.String())
			c := uint64(v.Int())
			if _, ok := made[c]; !ok && !seen[c] {
				seen[c] = true
				out = append(out, lr.Attributes().AsRaw())
			}
		})
	}
	return out
}

// counter returns the value of a counter (0 before its first increment).
func counter(t *testing.T, tel *componenttest.Telemetry, name string) int64 {
	t.Helper()
	m, err := tel.GetMetric(name)
	if err != nil {
		return 0
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is a sum: %T", name, m.Data)
	var v int64
	for _, dp := range sum.DataPoints {
		v += dp.Value
	}
	return v
}

// cookies returns the records the consumer took, by socket cookie.
func cookies(sink *gate) map[uint64]int {
	out := map[uint64]int{}
	for _, ld := range sink.AllLogs() {
		otlpsink.ForEach(ld, func(_ pcommon.Resource, lr plog.LogRecord) {
			v, _ := lr.Attributes().Get(attrSocketCookie.String())
			out[uint64(v.Int())]++
		})
	}
	return out
}

// A collector that stops (SIGTERM) gives Shutdown a context without a
// deadline: a next consumer that keeps refusing must not hold it forever.
// After the grace period what is left is dropped and counted.
func TestShutdownWithoutDeadlineEndsWhileTheConsumerRefuses(t *testing.T) {
	testenv.RequireRoot(t)
	cg := testnet.NewCgroup(t)
	next := newGate("retryable")
	cfg := Config{CgroupPath: cg.Path, RingBufferSize: 1 << 16, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond}
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	set := receiver.Settings{ID: component.NewID(metadata.Type), TelemetrySettings: tel.NewTelemetrySettings()}
	obsrecv, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID: set.ID, Transport: "ebpf", ReceiverCreateSettings: set,
	})
	require.NoError(t, err)
	opts := defaultOptions()
	opts.shutdownGrace = 500 * time.Millisecond
	r, err := newReceiver(&cfg, set.TelemetrySettings, obsrecv, Consumers{Logs: next}, opts)
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background(), nil))

	cg.Run(t, func() {
		client, server := testnet.Pair(t)
		require.NoError(t, client.Close())
		require.NoError(t, server.Close())
	})
	require.Eventually(t, func() bool { calls, _ := next.stats(); return calls > 0 },
		5*time.Second, 10*time.Millisecond, "the consumer is offered the records")

	start := time.Now()
	require.NoError(t, r.Shutdown(context.Background()))
	assert.Less(t, time.Since(start), 5*time.Second, "Shutdown ends after the grace period")
	assert.EqualValues(t, 2, counter(t, tel, "otelcol_netflowtcpend_records_dropped"), "both sockets' records, counted")
	assert.Empty(t, next.AllLogs())
}
