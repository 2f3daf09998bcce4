//go:build linux

package receiver

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

func TestClockConvertsMonotonicToWallTime(t *testing.T) {
	var c clock
	c.sync()
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	assert.WithinDuration(t, time.Now(), c.wall(uint64(ts.Nano())).AsTime(), 5*time.Millisecond)
}
