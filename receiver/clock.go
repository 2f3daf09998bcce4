//go:build linux

package receiver

import (
	"golang.org/x/sys/unix"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// clock converts the kernel's CLOCK_MONOTONIC timestamps (bpf_ktime_get_ns)
// to wall-clock time. The offset between the two clocks moves when NTP steps
// or slews the wall clock, so the reader re-measures it on every tick.
type clock struct {
	offset int64 // CLOCK_REALTIME - CLOCK_MONOTONIC, in ns
}

func (c *clock) sync() {
	var m1, r, m2 unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &r)
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2)
	mono := (m1.Nano() + m2.Nano()) / 2
	c.offset = r.Nano() - mono
}

func (c *clock) wall(monoNs uint64) pcommon.Timestamp {
	return pcommon.Timestamp(int64(monoNs) + c.offset)
}
