// Package netflowtcpend is an OpenTelemetry Collector receiver that emits one
// log record each time a TCP connection of a watched local socket ends (its
// first FIN or RST), observed by eBPF cgroup_skb programs, and, in a
// metrics pipeline, metrics of those ends. It runs on Linux only;
// elsewhere it builds, so that a distribution for several platforms
// compiles, and its Start fails.
package netflowtcpend

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/xreceiver"

	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
)

// deprecatedType is the component's first type name, before the collector
// moved to snake_case types. Configurations that use it keep working, with
// a deprecation warning from the collector.
var deprecatedType = component.MustNewType("netflowtcpend")

// NewFactory returns the factory that ocb and the collector use.
func NewFactory() receiver.Factory {
	return xreceiver.NewFactory(
		metadata.Type,
		createDefaultConfig,
		xreceiver.WithLogs(createLogs, metadata.LogsStability),
		xreceiver.WithMetrics(createMetrics, metadata.MetricsStability),
		xreceiver.WithDeprecatedTypeAlias(deprecatedType),
	)
}
