package netflowtcpend

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	"github.com/netflowtcpend/netflowtcpend/internal/sharedcomponent"
)

// In a logs and a metrics pipeline, the collector creates the receiver
// once per pipeline with the same configuration: both get one instance,
// with both consumers; another configuration gets its own.
func TestOneReceiverServesBothPipelines(t *testing.T) {
	f := NewFactory()
	held := receivers.Len()
	cfg := f.CreateDefaultConfig()
	set := receivertest.NewNopSettings(metadata.Type)
	logsNext, metricsNext := new(consumertest.LogsSink), new(consumertest.MetricsSink)

	logs, err := f.CreateLogs(context.Background(), set, cfg, logsNext)
	require.NoError(t, err)
	metrics, err := f.CreateMetrics(context.Background(), set, cfg, metricsNext)
	require.NoError(t, err)
	assert.Same(t, logs, metrics, "one instance for both pipelines")
	s := logs.(*sharedcomponent.Component[*shared]).Unwrap()
	assert.Same(t, logsNext, s.consumers.Logs)
	assert.Same(t, metricsNext, s.consumers.Metrics)

	other, err := f.CreateMetrics(context.Background(), set, f.CreateDefaultConfig(), metricsNext)
	require.NoError(t, err)
	assert.NotSame(t, logs, other, "another configuration, another receiver")

	// Shutdown without Start, from both pipelines, and of the other.
	require.NoError(t, logs.Shutdown(context.Background()))
	require.NoError(t, metrics.Shutdown(context.Background()))
	require.NoError(t, other.Shutdown(context.Background()))
	assert.Equal(t, held, receivers.Len(), "gone after shutdown")
}
