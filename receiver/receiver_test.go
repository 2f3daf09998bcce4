//go:build linux

package receiver

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/bpfids"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

func newTestReceiver(t testing.TB, s Config, next consumer.Logs) *Receiver {
	t.Helper()
	set := receivertest.NewNopSettings(metadata.Type)
	obsrecv, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID: set.ID, Transport: "ebpf", ReceiverCreateSettings: set,
	})
	require.NoError(t, err)
	r, err := New(&s, set.TelemetrySettings, obsrecv, Consumers{Logs: next})
	require.NoError(t, err)
	return r
}

var testConfig = Config{RingBufferSize: 1 << 16, MaxBatchSize: 16, FlushInterval: 20 * time.Millisecond, Metrics: defaultMetricsConfig()}

func TestShutdownWithoutStartAndTwice(t *testing.T) {
	r := newTestReceiver(t, testConfig, consumertest.NewNop())
	assert.NoError(t, r.Shutdown(context.Background()))
	assert.NoError(t, r.Shutdown(context.Background()))
}

func TestStartRejectsPathsThatAreNotCgroupV2(t *testing.T) {
	for _, tt := range []struct{ path, wantErr string }{
		{"/proc", "cgroup_path: /proc is not a directory on a cgroup v2 filesystem"},
		{"/nonexistent-cgroup", "cgroup_path: /nonexistent-cgroup does not exist; create it first"},
	} {
		s := testConfig
		s.CgroupPath = tt.path
		r := newTestReceiver(t, s, consumertest.NewNop())
		require.ErrorContains(t, r.Start(context.Background(), nil), tt.wantErr)
		assert.NoError(t, r.Shutdown(context.Background()))
	}
}

// A cgroup removed between validation and Start (a container that ended)
// fails Start with what validation would say, naming the key and the fix;
// nothing is loaded or attached, and Shutdown works.
func TestStartAfterTheCgroupWasRemoved(t *testing.T) {
	testenv.RequireRoot(t)
	cg := testnet.NewCgroup(t)
	gone := cg.Child(t, "gone")
	s := testConfig
	s.CgroupPath = gone.Path
	require.NoError(t, s.Validate())
	require.NoError(t, os.Remove(gone.Path))

	r := newTestReceiver(t, s, consumertest.NewNop())
	err := r.Start(context.Background(), nil)
	require.Error(t, err)
	assert.Equal(t, "cgroup_path: "+gone.Path+" does not exist; create it first (the cgroup of a systemd unit or a container exists only while it runs), "+
		"use another cgroup v2 directory, or leave cgroup_path empty for the root", err.Error())
	assert.Equal(t, err.Error(), s.Validate().Error(), "Start says what validation says")
	require.NoError(t, r.Shutdown(context.Background()))
	held, err := bpfids.Held(os.Getpid())
	require.NoError(t, err)
	assert.Zero(t, held.Len(), "a failed Start holds no BPF object")
}

func TestStartAndShutdownTwice(t *testing.T) {
	h := newHarness(t)
	h.start()
	require.Error(t, h.rcv.Start(context.Background(), nil), "a second Start must fail, not attach twice")
	assert.NoError(t, h.rcv.Shutdown(context.Background()))
	assert.NoError(t, h.rcv.Shutdown(context.Background()))
}

func TestShutdownPassesOnRecordsStillInTheRing(t *testing.T) {
	h := newHarness(t)
	// Nothing would be flushed for an hour but for Shutdown.
	h.startWith(Config{RingBufferSize: 1 << 20, MaxBatchSize: 1 << 20, FlushInterval: time.Hour})
	c := dial(t, loopback4, h, true, true)
	require.NoError(t, c.client.Close())
	require.NoError(t, readEnd(t, c.server))
	assert.Zero(t, h.sink.LogRecordCount(), "nothing is passed on before the flush interval")
	assert.Len(t, h.stop(), 2)
}

func TestRecordsArriveWithinTheFlushInterval(t *testing.T) {
	h := newHarness(t)
	h.startWith(Config{RingBufferSize: 1 << 20, MaxBatchSize: 1 << 20, FlushInterval: 100 * time.Millisecond})
	c := dial(t, loopback4, h, true, true)
	require.NoError(t, c.client.Close())
	require.NoError(t, readEnd(t, c.server))
	// Nothing but the flush timer passes these on before Shutdown (a batch
	// holds a million). The bound is far above the interval: in a crowded
	// QEMU guest (two guests under TCG on two CPUs) a second was once too
	// short.
	assert.Eventually(t, func() bool { return h.sink.LogRecordCount() >= 2 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 2, h.sink.LogRecordCount(), "one record per socket")
}

func TestBatchesAreCappedAtMaxBatchSize(t *testing.T) {
	h := newHarness(t)
	h.startWith(Config{RingBufferSize: 1 << 20, MaxBatchSize: 3, FlushInterval: time.Hour})
	for range 5 {
		c := dial(t, loopback4, h, true, true)
		require.NoError(t, c.client.Close())
		require.NoError(t, readEnd(t, c.server))
	}
	assert.Len(t, h.stop(), 10)
	for _, logs := range h.sink.AllLogs() {
		assert.LessOrEqual(t, logs.LogRecordCount(), 3)
	}
}
