//go:build linux

package receiver

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/bpf"
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

	const batch = 100
	sink := &discard{}
	r := newTestReceiver(t, Config{RingBufferSize: 1 << 20, MaxBatchSize: batch, FlushInterval: time.Hour}, sink)
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

	// Each record takes the ring's 8-byte header beside its own bytes.
	per := (bpf.EventSize + 8 + 7) &^ 7
	few := (256 << 10) / per // the most that stay under 256 KiB
	require.NoError(t, filler.Fill(few))
	time.Sleep(300 * time.Millisecond)
	assert.Zero(t, sink.records.Load(), "no wake-up for a few records")

	// The record that takes the waiting data past 256 KiB wakes the
	// reader, which passes on what it finds in full batches of 100.
	// Records written after it caught up wait for the next tick (an hour
	// away), so the count is at least the waking record's, in full
	// batches, not always all of them.
	require.NoError(t, filler.Fill(500))
	atLeast := int64((few + 1) / batch * batch)
	assert.Eventually(t, func() bool { return sink.records.Load() >= atLeast }, 2*time.Second, 10*time.Millisecond,
		"the burst wakes the reader, which passes on full batches")
}
