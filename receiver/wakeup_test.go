//go:build linux

package receiver

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/bpftest"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
)

// A few records wait for the reader's next tick; a burst wakes it up at
// once (each quarter of this 1 MiB ring, 256 KiB, of waiting data does:
// bpf.DefaultWakeupBytes is larger).
func TestReaderWakesUpForBurstsNotForEveryRecord(t *testing.T) {
	testenv.RequireRoot(t)
	filler, err := bpftest.NewFiller(1<<20, benchEvent(1))
	require.NoError(t, err)
	defer filler.Close()
	rd, err := filler.NewReader()
	require.NoError(t, err)

	sink := &discard{}
	r := newTestReceiver(t, Config{RingBufferSize: 1 << 20, MaxBatchSize: 100, FlushInterval: time.Hour}, sink)
	r.cgroups = cgroupv2.NewPaths(t.TempDir(), time.Hour)
	loop := testLoop(r, rd)
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop.run(context.Background())
	}()
	defer func() {
		require.NoError(t, rd.Flush())
		<-done
		rd.Close()
	}()

	require.NoError(t, filler.Fill(1000)) // 188 KiB
	time.Sleep(300 * time.Millisecond)
	assert.Zero(t, sink.records.Load(), "no wake-up for a few records")

	// 282 KiB in all: the record that takes the waiting data past 256 KiB
	// (the 1366th) wakes the reader, which passes on what it finds in full
	// batches of 100. Records written after it caught up wait for the next
	// tick (an hour away), so the count is at least 1300, not always 1500.
	require.NoError(t, filler.Fill(500))
	assert.Eventually(t, func() bool { return sink.records.Load() >= 1300 }, 2*time.Second, 10*time.Millisecond,
		"the burst wakes the reader, which passes on full batches")
}
