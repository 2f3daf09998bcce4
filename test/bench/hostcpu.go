//go:build linux

package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// hostCPU is the first line of /proc/stat: the time all CPUs spent busy
// (user, nice, system, irq, softirq, steal) and in all, in clock ticks.
type hostCPU struct{ busy, total uint64 }

func readHostCPU() (hostCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostCPU{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return hostCPU{}, errors.New("unexpected /proc/stat")
	}
	var v [8]uint64 // user nice system idle iowait irq softirq steal
	for i := range v {
		if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
			return hostCPU{}, err
		}
	}
	busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return hostCPU{busy: busy, total: busy + v[3] + v[4]}, nil
}

// busyTime is the busy CPU time between two readings, over all CPUs.
func busyTime(before, after hostCPU) time.Duration {
	return time.Duration(after.busy-before.busy) * time.Second / 100 // USER_HZ
}

// busyShare is the share of all CPUs' time that was busy between two
// readings.
func busyShare(before, after hostCPU) float64 {
	if after.total == before.total {
		return 0
	}
	return float64(after.busy-before.busy) / float64(after.total-before.total)
}

// loadAverage returns /proc/loadavg's first three fields.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
