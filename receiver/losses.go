//go:build linux

package receiver

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
)

// warnEvery rate-limits warnings about lost or malformed records.
const warnEvery = 10 * time.Second

// lossWatcher turns the kernel's cumulative counters into telemetry and into
// warnings that are written at most once per warnEvery.
type lossWatcher struct {
	logger    *zap.Logger
	telemetry *metadata.TelemetryBuilder
	now       func() time.Time

	last               bpf.Stats
	unwarnedLost       uint64
	unwarnedDNSLost    uint64
	unwarnedCgroupLost uint64
	unwarnedTLSLost    uint64
	unwarnedBad        uint64
	lastBadErr         error
	lastWarning        time.Time
}

func (w *lossWatcher) update(s bpf.Stats) {
	ctx := context.Background()
	if d := s.Lost - w.last.Lost; d > 0 {
		w.telemetry.NetflowtcpendRecordsLost.Add(ctx, int64(d))
		w.unwarnedLost += d
	}
	if d := s.NoStorage - w.last.NoStorage; d > 0 {
		w.telemetry.NetflowtcpendSocketStorageFailures.Add(ctx, int64(d))
	}
	if d := s.DNSLost - w.last.DNSLost; d > 0 {
		w.telemetry.NetflowtcpendDNSMessagesLost.Add(ctx, int64(d))
		w.unwarnedDNSLost += d
	}
	if d := s.CgroupLost - w.last.CgroupLost; d > 0 {
		w.telemetry.NetflowtcpendCgroupsLost.Add(ctx, int64(d))
		w.unwarnedCgroupLost += d
	}
	if d := s.TLSLost - w.last.TLSLost; d > 0 {
		w.telemetry.NetflowtcpendTLSPiecesLost.Add(ctx, int64(d))
		w.unwarnedTLSLost += d
	}
	w.last = s
	w.warn()
}

func (w *lossWatcher) malformed(err error) {
	w.unwarnedBad++
	w.lastBadErr = err
}

func (w *lossWatcher) warn() {
	if w.unwarnedLost == 0 && w.unwarnedBad == 0 && w.unwarnedDNSLost == 0 && w.unwarnedCgroupLost == 0 && w.unwarnedTLSLost == 0 {
		return
	}
	now := w.now()
	if !w.lastWarning.IsZero() && now.Sub(w.lastWarning) < warnEvery {
		return
	}
	w.lastWarning = now
	if w.unwarnedLost > 0 {
		w.logger.Warn("Kernel ring buffer was full; connection-end records were lost. Raise ring_buffer_size, or look for a slow consumer",
			zap.Uint64("lost", w.unwarnedLost), zap.Uint64("lost_total", w.last.Lost))
		w.unwarnedLost = 0
	}
	if w.unwarnedDNSLost > 0 {
		w.logger.Warn("Kernel ring buffer was full; DNS messages were lost, so some domains may be missing",
			zap.Uint64("lost", w.unwarnedDNSLost), zap.Uint64("lost_total", w.last.DNSLost))
		w.unwarnedDNSLost = 0
	}
	if w.unwarnedCgroupLost > 0 {
		w.logger.Warn("Kernel ring buffer was full; new cgroups were not reported, so containers created and removed between two walks of the cgroup tree may lack container.id",
			zap.Uint64("lost", w.unwarnedCgroupLost), zap.Uint64("lost_total", w.last.CgroupLost))
		w.unwarnedCgroupLost = 0
	}
	if w.unwarnedTLSLost > 0 {
		w.logger.Warn("Kernel ring buffer was full; pieces of TLS ClientHellos were lost, so some connections may lack netflow.tls.server_name",
			zap.Uint64("lost", w.unwarnedTLSLost), zap.Uint64("lost_total", w.last.TLSLost))
		w.unwarnedTLSLost = 0
	}
	if w.unwarnedBad > 0 {
		w.logger.Warn("Dropped records that could not be decoded",
			zap.Uint64("malformed", w.unwarnedBad), zap.Error(w.lastBadErr))
		w.unwarnedBad = 0
	}
}
