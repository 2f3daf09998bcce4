//go:build linux

package receiver

import (
	"strconv"
	"time"

	"go.uber.org/zap"
)

// consumerLog says what the read loop does about a next consumer that
// refuses, drops or holds on to records, at most one time per warnEvery:
// what happens in between is summed into the next lines, never one line
// per refusal.
type consumerLog struct {
	logger *zap.Logger
	now    func() time.Time
	// queued: batches wait in the logs queue while the read loop reads on
	// (a metrics pipeline shares it), not in the ring buffer.
	queued bool

	lastLine time.Time // when the last lines were written

	refusingSince time.Time // start of the current run of refusals; zero when none
	refusals      uint64    // refused calls not yet reported
	refused       uint64    // records in those calls (a batch refused twice counts twice)
	lastRefusal   error
	recovered     time.Duration // refusals (or a reported stall) ended after this long, not yet reported; 0 when none

	dropped       uint64 // records dropped, not yet reported
	droppedTotal  uint64
	lastDrop      error
	blockedSince  time.Time // a call that has not returned yet; zero when none
	blockedWarned bool      // that call was reported
}

func (c *consumerLog) refuse(records int, err error) {
	if c.refusingSince.IsZero() {
		c.refusingSince = c.now()
	}
	c.refusals++
	c.refused += uint64(records)
	c.lastRefusal = err
}

// accept notes that the consumer took a batch.
func (c *consumerLog) accept() {
	if !c.refusingSince.IsZero() {
		c.recovered = max(c.now().Sub(c.refusingSince), time.Nanosecond)
		c.refusingSince = time.Time{}
	}
}

func (c *consumerLog) drop(records int, err error) {
	c.dropped += uint64(records)
	c.droppedTotal += uint64(records)
	c.lastDrop = err
}

// waiting notes a call in progress since start; zero when it returned.
func (c *consumerLog) waiting(start time.Time) {
	if start.Equal(c.blockedSince) {
		return
	}
	if start.IsZero() && c.blockedWarned && c.refusingSince.IsZero() {
		// A reported stall: accept reports its end, as of a refusal.
		c.refusingSince = c.blockedSince
	}
	c.blockedSince, c.blockedWarned = start, false
}

// report writes what has not been said yet, unless a line was written less
// than warnEvery ago.
func (c *consumerLog) report() { c.write(false) }

// final writes what has not been said yet, now: the read loop ends.
func (c *consumerLog) final() { c.write(true) }

func (c *consumerLog) write(force bool) {
	now := c.now()
	blocked := !c.blockedSince.IsZero() && !c.blockedWarned && now.Sub(c.blockedSince) >= warnEvery
	if c.refusals == 0 && c.dropped == 0 && c.recovered == 0 && !blocked {
		return
	}
	if !force && !c.lastLine.IsZero() && now.Sub(c.lastLine) < warnEvery {
		return
	}
	c.lastLine = now
	if c.refusals > 0 {
		fields := []zap.Field{
			zap.Uint64("refusals", c.refusals), zap.Uint64("records_refused", c.refused), zap.Error(c.lastRefusal),
		}
		if !c.refusingSince.IsZero() {
			fields = append(fields, zap.Duration("refusing_for", now.Sub(c.refusingSince).Round(time.Millisecond)))
		}
		c.logger.Warn("Next consumer refused records; retrying with backoff (50ms to 5s). "+c.meanwhile(), fields...)
		c.refusals, c.refused = 0, 0
	}
	if c.recovered > 0 {
		c.logger.Info("Next consumer accepts records again; reading resumes",
			zap.Duration("not_accepting_for", c.recovered.Round(time.Millisecond)))
		c.recovered = 0
	}
	if c.dropped > 0 {
		c.logger.Error("Next consumer refused records permanently, or Shutdown ran out of time; dropped them "+
			"(otelcol_netflowtcpend_records_dropped)",
			zap.Uint64("dropped", c.dropped), zap.Uint64("dropped_total", c.droppedTotal), zap.Error(c.lastDrop))
		c.dropped = 0
	}
	if blocked {
		c.logger.Warn("Next consumer has not returned. "+c.meanwhile(),
			zap.Duration("waiting_for", now.Sub(c.blockedSince).Round(time.Millisecond)))
		c.blockedWarned = true
	}
}

// meanwhile says what happens to new records while the consumer refuses
// or stalls.
func (c *consumerLog) meanwhile() string {
	if c.queued {
		return "Meanwhile the receiver reads on for the metrics pipeline, which counts every connection end: " +
			"log batches wait in a queue of " + strconv.Itoa(logsQueueBatches) + ", and those beyond it are dropped " +
			"(otelcol_netflowtcpend_records_dropped)"
	}
	return "Meanwhile the receiver reads nothing: the kernel ring buffer holds new records, " +
		"and connection ends that do not fit are counted in otelcol_netflowtcpend_records_lost"
}
