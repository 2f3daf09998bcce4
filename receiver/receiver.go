// Package receiver is the runtime of the netflowtcpend receiver: it loads and
// attaches the kernel programs, reads their records, turns them into log
// records and passes them on in batches.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
)

// Settings are the validated configuration values the runtime needs.
type Settings struct {
	CgroupPath     string // empty: the root of the cgroup v2 mount
	RingBufferSize int
	MaxBatchSize   int
	FlushInterval  time.Duration
}

// Receiver watches TCP connection ends in a cgroup. It implements
// receiver.Logs.
type Receiver struct {
	settings  Settings
	logger    *zap.Logger
	telemetry *metadata.TelemetryBuilder
	obsrecv   *receiverhelper.ObsReport
	next      consumer.Logs

	mu      sync.Mutex // guards the fields below across Start and Shutdown
	objs    *bpf.Objects
	reader  *ringbuf.Reader
	done    chan struct{} // closed when the read loop has returned
	cancel  context.CancelFunc
	stopped bool
}

// New creates a receiver; nothing touches the kernel before Start.
func New(s Settings, tel component.TelemetrySettings, obsrecv *receiverhelper.ObsReport, next consumer.Logs) (*Receiver, error) {
	tb, err := metadata.NewTelemetryBuilder(tel)
	if err != nil {
		return nil, fmt.Errorf("create telemetry: %w", err)
	}
	return &Receiver{settings: s, logger: tel.Logger, telemetry: tb, obsrecv: obsrecv, next: next}, nil
}

// Start loads the kernel programs, attaches them to the cgroup and starts
// reading. Every error says what to fix.
func (r *Receiver) Start(_ context.Context, _ component.Host) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.objs != nil {
		return errors.New("receiver already started")
	}

	path := r.settings.CgroupPath
	if path == "" {
		root, err := cgroupv2.Root()
		if err != nil {
			return fmt.Errorf("find the cgroup v2 root: %w; or set cgroup_path", err)
		}
		path = root
	}
	if err := cgroupv2.Check(path); err != nil {
		return fmt.Errorf("cgroup_path: %w", err)
	}

	objs, err := bpf.Load(bpf.Options{RingBufferSize: r.settings.RingBufferSize})
	if err != nil {
		return err
	}
	rd, err := objs.NewReader()
	if err != nil {
		objs.Close()
		return err
	}
	if err := r.telemetry.RegisterNetflowtcpendRingBufferPendingCallback(
		func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(rd.AvailableBytes()))
			return nil
		}); err != nil {
		rd.Close()
		objs.Close()
		return fmt.Errorf("register telemetry: %w", err)
	}
	if err := objs.Attach(path); err != nil {
		rd.Close()
		objs.Close()
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	r.objs, r.reader, r.cancel = objs, rd, cancel
	r.done = make(chan struct{})
	loop := newReadLoop(r, objs, rd)
	go func() {
		defer close(r.done)
		loop.run(ctx)
	}()
	r.logger.Info("Watching TCP connection ends",
		zap.String("cgroup_path", path),
		zap.Int("ring_buffer_size", rd.BufferSize()))
	return nil
}

// Shutdown detaches the programs, passes on every record already in the ring
// buffer and frees the kernel objects. It is safe without Start and twice.
func (r *Receiver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.objs == nil || r.stopped {
		r.telemetry.Shutdown()
		return nil
	}
	r.stopped = true

	// No new records after this; the loop drains the ring and returns.
	r.objs.Detach()
	var err error
	if ferr := r.reader.Flush(); ferr != nil {
		// Closing interrupts the loop instead; unread records are lost.
		err = fmt.Errorf("flush ring buffer: %w", ferr)
		r.cancel()
		_ = r.reader.Close()
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		// Out of time: stop retrying the consumer and drop what is left.
		r.cancel()
		<-r.done
		err = errors.Join(err, ctx.Err())
	}
	r.cancel()
	// Unregister the gauge callback before the reader it reads goes away.
	r.telemetry.Shutdown()
	return errors.Join(err, r.reader.Close(), r.objs.Close())
}
