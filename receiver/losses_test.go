//go:build linux

package receiver

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	"github.com/netflowtcpend/netflowtcpend/internal/metadatatest"
)

func TestLossWatcherCountsAndRateLimitsWarnings(t *testing.T) {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(t.Context()) })
	tb, err := metadata.NewTelemetryBuilder(tel.NewTelemetrySettings())
	require.NoError(t, err)
	core, logs := observer.New(zapcore.WarnLevel)
	now := time.Unix(1000, 0)
	w := lossWatcher{logger: zap.New(core), telemetry: tb, now: func() time.Time { return now }}

	w.update(bpf.Stats{Lost: 3, NoStorage: 1})
	require.Equal(t, 1, logs.Len(), "the first loss is reported at once")
	assert.Equal(t, uint64(3), logs.All()[0].ContextMap()["lost"])

	now = now.Add(time.Second)
	w.update(bpf.Stats{Lost: 10, NoStorage: 1})
	w.malformed(errors.New("unknown address family 9"))
	now = now.Add(time.Second)
	w.update(bpf.Stats{Lost: 12, NoStorage: 2})
	assert.Equal(t, 1, logs.Len(), "no second warning within 10s")

	now = now.Add(warnEvery)
	w.update(bpf.Stats{Lost: 12, NoStorage: 2})
	require.Equal(t, 3, logs.Len())
	assert.Equal(t, uint64(9), logs.All()[1].ContextMap()["lost"], "the losses held back are summed")
	assert.Equal(t, uint64(12), logs.All()[1].ContextMap()["lost_total"])
	assert.Equal(t, uint64(1), logs.All()[2].ContextMap()["malformed"])

	now = now.Add(warnEvery)
	w.update(bpf.Stats{Lost: 12, NoStorage: 2})
	assert.Equal(t, 3, logs.Len(), "nothing new, nothing said")

	metadatatest.AssertEqualNetflowtcpendRecordsLost(t, tel,
		[]metricdata.DataPoint[int64]{{Value: 12}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualNetflowtcpendSocketStorageFailures(t, tel,
		[]metricdata.DataPoint[int64]{{Value: 2}}, metricdatatest.IgnoreTimestamp())
}

func TestLossWatcherCountsLostCgroups(t *testing.T) {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(t.Context()) })
	tb, err := metadata.NewTelemetryBuilder(tel.NewTelemetrySettings())
	require.NoError(t, err)
	core, logs := observer.New(zapcore.WarnLevel)
	w := lossWatcher{logger: zap.New(core), telemetry: tb, now: time.Now}

	w.update(bpf.Stats{CgroupLost: 2})
	require.Equal(t, 1, logs.Len())
	assert.Contains(t, logs.All()[0].Message, "new cgroups were not reported")
	assert.Equal(t, uint64(2), logs.All()[0].ContextMap()["lost"])
	w.update(bpf.Stats{CgroupLost: 5})
	metadatatest.AssertEqualNetflowtcpendCgroupsLost(t, tel,
		[]metricdata.DataPoint[int64]{{Value: 5}}, metricdatatest.IgnoreTimestamp())
}
