//go:build linux

package receiver

import (
	"context"
	"testing"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// BenchmarkMetricsSink is what a metrics pipeline adds to each record the
// read loop reads: the end's metric values and attributes taken from the
// event, and counted in its series (benchEvent's: 16 destinations, one
// server port). Target: at most 300 ns of CPU per record, no allocation.
func BenchmarkMetricsSink(b *testing.B) {
	m := newMetricsSink(metricsSinkSettings{logger: zap.NewNop(), cfg: defaultMetricsConfig(), hostName: "node",
		next: consumertest.NewNop()}, true)
	defer func() { _ = m.sender.stop(context.Background()) }()
	ends := make([]connectionEnd, 256)
	events := make([]bpf.Event, len(ends))
	for i := range ends {
		events[i] = benchEvent(i)
		ends[i] = connectionEnd{event: &events[i], cgroup: cgroupInfo{container: "c0ffee"}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU(b)
	for i := range b.N {
		m.add(&ends[i%len(ends)], pcommon.Map{}, 0)
	}
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
}
