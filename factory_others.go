//go:build !linux

package netflowtcpend

import (
	"context"
	"errors"
	"runtime"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
)

// errUnsupportedPlatform is what Start says off Linux: eBPF cgroup programs
// are Linux's.
var errUnsupportedPlatform = errors.New("the netflow_tcp_end receiver is only supported on Linux (it attaches eBPF programs to a cgroup v2), not on " + runtime.GOOS)

func createLogs(context.Context, receiver.Settings, component.Config, consumer.Logs) (receiver.Logs, error) {
	return unsupported{}, nil
}

func createMetrics(context.Context, receiver.Settings, component.Config, consumer.Metrics) (receiver.Metrics, error) {
	return unsupported{}, nil
}

// unsupported is the receiver off Linux: creating it works, so that a
// configuration shared by several platforms validates; starting it fails.
type unsupported struct{}

func (unsupported) Start(context.Context, component.Host) error { return errUnsupportedPlatform }
func (unsupported) Shutdown(context.Context) error              { return nil }
