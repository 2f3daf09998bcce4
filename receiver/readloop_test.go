//go:build linux

package receiver

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/netflowtcpend/netflowtcpend/bpf"
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
	l := &readLoop{r: r, batch: newBatch("host", 16)}
	e := bpf.Event{
		Source: netip.MustParseAddrPort("10.0.0.1:1"), Destination: netip.MustParseAddrPort("10.0.0.2:2"),
		EndBy: bpf.EndByLocal, EndReason: bpf.EndFIN,
	}
	l.conv.append(l.batch.records(""), &e, nil, nil, 0)
	l.batch.len++
	return l
}

func TestFlushRetriesRetryableErrors(t *testing.T) {
	c := &flakyConsumer{failures: 2, err: errors.New("memory limit exceeded")}
	l := loopWithOneRecord(t, c)
	l.flush(context.Background())
	assert.Equal(t, 3, c.calls)
	assert.Equal(t, 1, c.LogRecordCount(), "delivered once, after two refusals")
	assert.Zero(t, l.batch.len, "a new batch starts empty")
	assert.Zero(t, l.batch.logs.LogRecordCount())
}

func TestFlushDropsOnPermanentError(t *testing.T) {
	c := &flakyConsumer{failures: 5, err: consumererror.NewPermanent(errors.New("bad data"))}
	l := loopWithOneRecord(t, c)
	l.flush(context.Background())
	assert.Equal(t, 1, c.calls, "a permanent error is not retried")
	assert.Zero(t, c.LogRecordCount())
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
