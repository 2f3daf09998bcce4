//go:build linux

package receiver

import (
	"go.opentelemetry.io/collector/pdata/plog"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
)

// Resource attribute keys.
const (
	AttrHostName    = string(semconv.HostNameKey)
	AttrContainerID = string(semconv.ContainerIDKey)
)

// batch collects log records for one ConsumeLogs call, in one ResourceLogs
// per container (and one for sockets outside containers), so that
// processors that work on resources (k8sattributes associating by
// container.id, resource) see them as they would from any other source.
type batch struct {
	hostName string
	capacity int

	logs        plog.Logs
	byContainer map[string]plog.LogRecordSlice
	len         int
}

func newBatch(hostName string, capacity int) *batch {
	b := &batch{hostName: hostName, capacity: capacity}
	b.reset()
	return b
}

func (b *batch) reset() {
	b.logs = plog.NewLogs()
	b.byContainer = map[string]plog.LogRecordSlice{}
	b.len = 0
}

// records returns the slice to append the records of containerID ("" for
// none) to.
func (b *batch) records(containerID string) plog.LogRecordSlice {
	if lrs, ok := b.byContainer[containerID]; ok {
		return lrs
	}
	rl := b.logs.ResourceLogs().AppendEmpty()
	if b.hostName != "" {
		rl.Resource().Attributes().PutStr(AttrHostName, b.hostName)
	}
	if containerID != "" {
		rl.Resource().Attributes().PutStr(AttrContainerID, containerID)
	}
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(metadata.ScopeName)
	lrs := sl.LogRecords()
	if containerID == "" {
		lrs.EnsureCapacity(b.capacity)
	}
	b.byContainer[containerID] = lrs
	return lrs
}

// take returns the batch's logs and starts a new batch.
func (b *batch) take() (plog.Logs, int) {
	logs, n := b.logs, b.len
	b.reset()
	return logs, n
}
