// Package netflowtcpend is an OpenTelemetry Collector receiver that emits one
// log record each time a TCP connection of a watched local socket ends (its
// first FIN or RST), observed by eBPF cgroup_skb programs.
package netflowtcpend

import (
	"context"
	"net/netip"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	flowreceiver "github.com/netflowtcpend/netflowtcpend/receiver"
)

// NewFactory returns the factory that ocb and the collector use.
func NewFactory() receiver.Factory {
	return receiver.NewFactory(
		metadata.Type,
		func() component.Config { return createDefaultConfig() },
		receiver.WithLogs(createLogs, metadata.LogsStability),
	)
}

func createLogs(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
	c := cfg.(*Config)
	obsrecv, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID:             set.ID,
		Transport:              "ebpf",
		LongLivedCtx:           true,
		ReceiverCreateSettings: set,
	})
	if err != nil {
		return nil, err
	}
	return flowreceiver.New(flowreceiver.Settings{
		CgroupPath:     c.CgroupPath,
		RingBufferSize: c.RingBufferSize,
		MaxBatchSize:   c.MaxBatchSize,
		FlushInterval:  c.FlushInterval,
		DNS: flowreceiver.DNSSettings{
			Enabled:      c.DNS.Enabled,
			MaxAddresses: c.DNS.MaxAddresses,
			MaxNames:     c.DNS.MaxNames,
			PayloadLimit: c.DNS.PayloadLimit,
			MinTTL:       c.DNS.MinTTL,
		},
		Filters: flowreceiver.FilterSettings{
			Include:     criteria(c.Filters.Include),
			Exclude:     criteria(c.Filters.Exclude),
			ExcludeSelf: c.Filters.ExcludeSelf,
		},
	}, set.TelemetrySettings, obsrecv, next)
}

// criteria converts a validated filter list.
func criteria(f FilterConfig) flowreceiver.Criteria {
	var c flowreceiver.Criteria
	for _, p := range f.Ports {
		c.Ports = append(c.Ports, uint16(p))
	}
	for _, s := range f.CIDRs {
		c.Prefixes = append(c.Prefixes, netip.MustParsePrefix(s).Masked())
	}
	for _, d := range f.Directions {
		c.Directions = append(c.Directions, map[string]bpf.Direction{
			"incoming": bpf.DirectionIncoming, "outgoing": bpf.DirectionOutgoing, "unknown": bpf.DirectionUnknown,
		}[d])
	}
	c.Cgroups = append(c.Cgroups, f.Cgroups...)
	return c
}
