//go:build linux

package receiver

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/metadatatest"
)

// flakyConsumer refuses the first failures calls with err, then passes on.
type flakyConsumer struct {
	consumertest.LogsSink
	failures int
	err      error
	calls    int
}

func (f *flakyConsumer) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	f.calls++
	if f.calls <= f.failures {
		return f.err
	}
	return f.LogsSink.ConsumeLogs(ctx, ld)
}

func (f *flakyConsumer) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func loopWithOneRecord(t *testing.T, next consumer.Logs) *readLoop {
	t.Helper()
	r := newTestReceiver(t, testConfig, next)
	return withOneRecord(r)
}

// zeroCounters are the counters of kernel programs that lose nothing, for
// read loops without kernel objects.
type zeroCounters struct{}

func (zeroCounters) Stats() (bpf.Stats, error) { return bpf.Stats{}, nil }

// testLoop builds r's read loop as Start does, reading rd (nil: none),
// without kernel objects: the test sets r.cgroups if records need it.
func testLoop(r *Receiver, rd *ringbuf.Reader) *readLoop {
	return newReadLoop(r.loopSettings("/", kernelSide{reader: rd, counters: zeroCounters{}}))
}

// withOneRecord makes a read loop of r, without kernel objects, holding a
// batch of one record.
func withOneRecord(r *Receiver) *readLoop {
	l := testLoop(r, nil)
	e := bpf.Event{
		Source: netip.MustParseAddrPort("10.0.0.1:1"), Destination: netip.MustParseAddrPort("10.0.0.2:2"),
		EndBy: bpf.EndByLocal, EndReason: bpf.EndFIN,
	}
	l.logs.add(&connectionEnd{event: &e}, 0)
	return l
}

// receiverWithTelemetry is a test receiver whose metrics and warnings the
// test reads.
func receiverWithTelemetry(t *testing.T, next consumer.Logs) (*Receiver, *componenttest.Telemetry, *observer.ObservedLogs) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	core, logs := observer.New(zapcore.InfoLevel)
	set := tel.NewTelemetrySettings()
	set.Logger = zap.New(core)
	cfg := testConfig
	r, err := New(&cfg, set, nil, next)
	require.NoError(t, err)
	r.obsrecv, err = receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID: component.MustNewID("netflow_tcp_end"), Transport: "ebpf",
		ReceiverCreateSettings: receiver.Settings{ID: component.MustNewID("netflow_tcp_end"), TelemetrySettings: set},
	})
	require.NoError(t, err)
	return r, tel, logs
}

func TestFlushRetriesRetryableErrors(t *testing.T) {
	c := &flakyConsumer{failures: 2, err: errors.New("memory limit exceeded")}
	l := loopWithOneRecord(t, c)
	l.flush(context.Background())
	assert.Equal(t, 3, c.calls)
	assert.Equal(t, 1, c.LogRecordCount(), "delivered once, after two refusals")
	assert.Zero(t, l.logs.batch.len, "a new batch starts empty")
	assert.Zero(t, l.logs.batch.logs.LogRecordCount())
}

func TestFlushDropsOnPermanentError(t *testing.T) {
	c := &flakyConsumer{failures: 5, err: consumererror.NewPermanent(errors.New("bad data"))}
	r, tel, logs := receiverWithTelemetry(t, c)
	l := withOneRecord(r)
	l.flush(context.Background())
	assert.Equal(t, 1, c.calls, "a permanent error is not retried")
	assert.Zero(t, c.LogRecordCount())
	metadatatest.AssertEqualNetflowtcpendRecordsDropped(t, tel,
		[]metricdata.DataPoint[int64]{{Value: 1}}, metricdatatest.IgnoreTimestamp())
	require.Equal(t, 1, logs.Len())
	assert.Equal(t, zapcore.ErrorLevel, logs.All()[0].Level)
	assert.Equal(t, uint64(1), logs.All()[0].ContextMap()["dropped"])
}

// Refusals are retried without a line per refusal: the first is said at
// once, the rest summed into later lines.
func TestFlushRetriesWithoutALinePerRefusal(t *testing.T) {
	c := &flakyConsumer{failures: 4, err: errors.New("sending queue is full")}
	r, tel, logs := receiverWithTelemetry(t, c)
	l := withOneRecord(r)
	l.flush(context.Background())
	assert.Equal(t, 5, c.calls)
	assert.Equal(t, 1, c.LogRecordCount())
	require.Equal(t, 1, logs.Len(), "one line for four refusals within warnEvery: %v", logs.All())
	assert.Equal(t, uint64(1), logs.All()[0].ContextMap()["refusals"])
	l.consumer.final()
	require.Equal(t, 3, logs.Len())
	assert.Equal(t, uint64(3), logs.All()[1].ContextMap()["refusals"], "the refusals held back are summed")
	assert.Equal(t, "Next consumer accepts records again; reading resumes", logs.All()[2].Message)
	// The standard receiver metric counts each refused call's records.
	got, err := tel.GetMetric("otelcol_receiver_refused_log_records")
	require.NoError(t, err)
	assert.Equal(t, int64(4), got.Data.(metricdata.Sum[int64]).DataPoints[0].Value)
	_, err = tel.GetMetric("otelcol_netflowtcpend_records_dropped")
	assert.Error(t, err, "nothing dropped")
}

// blockingConsumer holds every call until release is closed.
type blockingConsumer struct {
	consumertest.LogsSink
	entered chan struct{}
	release chan struct{}
}

func (b *blockingConsumer) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	close(b.entered)
	<-b.release
	return b.LogsSink.ConsumeLogs(ctx, ld)
}

func TestFlushWaitsForAConsumerThatDoesNotReturn(t *testing.T) {
	c := &blockingConsumer{entered: make(chan struct{}), release: make(chan struct{})}
	l := loopWithOneRecord(t, c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.flush(context.Background())
	}()
	<-c.entered
	select {
	case <-done:
		t.Fatal("flush returned before the consumer did")
	case <-time.After(5 * testConfig.FlushInterval): // ticks pass meanwhile
	}
	close(c.release)
	<-done
	assert.Equal(t, 1, c.LogRecordCount())
}

func TestFlushGivesUpWhenShutdownRunsOutOfTime(t *testing.T) {
	c := &flakyConsumer{failures: 1 << 30, err: errors.New("unavailable")}
	l := loopWithOneRecord(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	l.flush(ctx)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Greater(t, c.calls, 1)
	assert.Zero(t, c.LogRecordCount())
}
