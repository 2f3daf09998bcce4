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
	k8s          bool         // records may carry netflow.peer.k8s.* attributes
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
	if s.k8s {
		l.conv.capacity += numK8sPeerAttributes
	}
	return l
}

// add appends the log record of end, read from the ring at observed, and
// returns its attributes (valid until the batch is taken).
func (s *logsSink) add(end *connectionEnd, observed pcommon.Timestamp) pcommon.Map {
	lrs := s.batch.records(end.cgroup.container)
	s.conv.k8sPeer = nil
	if end.hasK8sPeer {
		s.conv.k8sPeer = &end.k8sPeer
	}
	s.conv.append(lrs, end.event, end.srcNames, end.dstNames, end.sni, observed)
	s.batch.len++
	return lrs.At(lrs.Len() - 1).Attributes()
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
