//go:build linux

package receiver

import (
	"context"
	"errors"
	"sync/atomic"

	"go.opentelemetry.io/collector/pdata/plog"
)

// logsQueueBatches is how many log batches wait for the logs consumer
// beside a metrics pipeline, besides the one being delivered: a short
// refusal (a memory_limiter's spike) loses nothing; a long one drops
// batches rather than hold their memory or stop the reading.
const logsQueueBatches = 4

// errQueueFull is why batches are dropped while the logs queue is full.
var errQueueFull = errors.New("the logs consumer has not taken the last batches, and the metrics pipeline needs the ring buffer read; " +
	"log batches beyond the queue are dropped")

// logsQueue takes log batches from the read loop to a goroutine of their
// own (deliverQueued) when the receiver is in a metrics pipeline too: a
// logs consumer that refuses or stalls must not stop the reading, or
// connection ends would be lost to a full ring buffer, from the metrics
// too. Without a metrics pipeline the read loop delivers itself and stops
// reading meanwhile, so that the ring buffer holds what comes.
type logsQueue struct {
	batches chan queuedBatch
	done    chan struct{} // closed when deliverQueued has returned
	// Records enqueue dropped, not yet told to the consumer log (which
	// deliverQueued owns).
	dropped atomic.Int64
}

type queuedBatch struct {
	logs plog.Logs
	n    int
}

func newLogsQueue() *logsQueue {
	return &logsQueue{batches: make(chan queuedBatch, logsQueueBatches), done: make(chan struct{})}
}

// close ends deliverQueued once it has delivered what is queued (or given
// up at the read loop's context's end), and waits for it.
func (q *logsQueue) close() {
	close(q.batches)
	<-q.done
}

// enqueue hands a batch to deliverQueued. When the queue is full it drops
// the batch, counted in records_dropped, unless the loop is ending (the
// ring is drained for Shutdown): then it waits for room until ctx ends.
func (l *readLoop) enqueue(ctx context.Context, logs plog.Logs, n int) {
	q, b := l.logsQueue, queuedBatch{logs, n}
	select {
	case q.batches <- b:
		return
	default:
	}
	if l.ending {
		select {
		case q.batches <- b:
			return
		case <-ctx.Done():
		}
	}
	l.telemetry.NetflowtcpendRecordsDropped.Add(context.Background(), int64(n))
	q.dropped.Add(int64(n))
}

// deliverQueued delivers the queued batches, with the read loop's
// retries (deliver), until the queue is closed. It owns l.consumer
// meanwhile.
func (l *readLoop) deliverQueued(ctx context.Context) {
	q := l.logsQueue
	defer close(q.done)
	defer l.consumer.final()
	for b := range q.batches {
		l.takeQueueDrops()
		l.deliver(ctx, b.logs, b.n)
	}
	l.takeQueueDrops()
}

// takeQueueDrops tells the consumer log of the batches enqueue dropped.
func (l *readLoop) takeQueueDrops() {
	if l.logsQueue == nil {
		return
	}
	if n := l.logsQueue.dropped.Swap(0); n > 0 {
		l.consumer.drop(int(n), errQueueFull)
	}
}
