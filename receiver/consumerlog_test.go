//go:build linux

package receiver

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestConsumerLogRateLimitsAndSums(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	now := time.Unix(1000, 0)
	c := consumerLog{logger: zap.New(core), now: func() time.Time { return now }}
	refusal := errors.New("data refused due to high memory usage")

	// A refusal is said at once; a hundred more within warnEvery are not.
	for range 101 {
		c.refuse(1024, refusal)
		c.report()
		now = now.Add(50 * time.Millisecond)
	}
	require.Equal(t, 1, logs.Len())
	assert.Equal(t, zapcore.WarnLevel, logs.All()[0].Level)

	// Then one line with the sums, still refusing.
	now = time.Unix(1000, 0).Add(warnEvery)
	c.report()
	require.Equal(t, 2, logs.Len())
	second := logs.All()[1].ContextMap()
	assert.Equal(t, uint64(100), second["refusals"])
	assert.Equal(t, uint64(100*1024), second["records_refused"])
	assert.Equal(t, warnEvery, second["refusing_for"])

	// Recovery and a drop: said together at the next chance.
	now = now.Add(time.Second)
	c.accept()
	c.drop(7, errors.New("bad request"))
	c.report()
	require.Equal(t, 2, logs.Len(), "within warnEvery of the last line")
	now = now.Add(warnEvery)
	c.report()
	require.Equal(t, 4, logs.Len())
	assert.Equal(t, 11*time.Second, logs.All()[2].ContextMap()["not_accepting_for"])
	assert.Equal(t, zapcore.ErrorLevel, logs.All()[3].Level)
	assert.Equal(t, uint64(7), logs.All()[3].ContextMap()["dropped"])

	// Nothing new, nothing said.
	now = now.Add(warnEvery)
	c.report()
	assert.Equal(t, 4, logs.Len())
}

func TestConsumerLogSaysOnceThatACallHasNotReturned(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	now := time.Unix(1000, 0)
	c := consumerLog{logger: zap.New(core), now: func() time.Time { return now }}
	start := now
	for range 60 { // a minute of ticks in one call
		now = now.Add(time.Second)
		c.waiting(start)
		c.report()
	}
	require.Equal(t, 1, logs.Len())
	assert.Equal(t, warnEvery, logs.All()[0].ContextMap()["waiting_for"])
	c.waiting(time.Time{})
	c.accept()
	c.report()
	require.Equal(t, 2, logs.Len())
	assert.Equal(t, time.Minute, logs.All()[1].ContextMap()["not_accepting_for"])
}
