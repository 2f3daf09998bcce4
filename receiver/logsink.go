//go:build linux

package receiver

import (
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
)

// logsSinkSettings are what the logs sink uses.
type logsSinkSettings struct {
	hostName     string
	maxBatchSize int
	attrs        attributeSet // what records carry
	obsrecv      *receiverhelper.ObsReport
	next         consumer.Logs
}

// logsSink turns connection ends into log records, batched for the next
// consumer of a logs pipeline; the read loop passes each batch on (flush).
type logsSink struct {
	batch        *batch
	conv         converter
	maxBatchSize int
	obsrecv      *receiverhelper.ObsReport
	next         consumer.Logs
}

func newLogsSink(s logsSinkSettings) *logsSink {
	l := &logsSink{
		batch:        newBatch(s.hostName, s.maxBatchSize),
		maxBatchSize: s.maxBatchSize,
		obsrecv:      s.obsrecv, next: s.next,
	}
	l.conv.init(s.attrs)
	return l
}

// add appends the log record of end, read from the ring at observed.
func (s *logsSink) add(end *connectionEnd, observed pcommon.Timestamp) {
	s.conv.append(s.batch.records(end.cgroup.container), end.event, end.srcNames, end.dstNames, end.sni, observed)
	s.batch.len++
}

// full says whether the batch is to be passed on now.
func (s *logsSink) full() bool { return s.batch.len >= s.maxBatchSize }

// take returns the batch and its record count, and starts a new one; an
// empty batch stays.
func (s *logsSink) take() (plog.Logs, int) {
	if s.batch.len == 0 {
		return plog.Logs{}, 0
	}
	return s.batch.take()
}
