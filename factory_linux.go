package netflowtcpend

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"

	"github.com/netflowtcpend/netflowtcpend/internal/sharedcomponent"
	flowreceiver "github.com/netflowtcpend/netflowtcpend/receiver"
)

// receivers holds the receiver of each configuration: in a logs and a
// metrics pipeline, the collector creates it twice with the same
// configuration, and both get the one instance (one set of kernel
// programs, one read loop), as the OTLP receiver does.
var receivers = sharedcomponent.NewMap[*Config, *shared]()

func createLogs(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
	c, err := receivers.LoadOrStore(cfg.(*Config), func() (*shared, error) { return newShared(set, cfg.(*Config)) })
	if err != nil {
		return nil, err
	}
	c.Unwrap().consumers.Logs = next
	return c, nil
}

func createMetrics(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
	c, err := receivers.LoadOrStore(cfg.(*Config), func() (*shared, error) { return newShared(set, cfg.(*Config)) })
	if err != nil {
		return nil, err
	}
	c.Unwrap().consumers.Metrics = next
	return c, nil
}

// shared is the receiver of one configuration, with the next consumers of
// the pipelines it is in. The receiver is made at Start, when every
// pipeline has given its consumer.
type shared struct {
	cfg       *Config
	set       receiver.Settings
	obsrecv   *receiverhelper.ObsReport
	consumers flowreceiver.Consumers
	rcv       *flowreceiver.Receiver
}

func newShared(set receiver.Settings, cfg *Config) (*shared, error) {
	obsrecv, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID:             set.ID,
		Transport:              "ebpf",
		LongLivedCtx:           true,
		ReceiverCreateSettings: set,
	})
	if err != nil {
		return nil, err
	}
	return &shared{cfg: cfg, set: set, obsrecv: obsrecv}, nil
}

func (s *shared) Start(ctx context.Context, host component.Host) error {
	rcv, err := flowreceiver.New(s.cfg, s.set.TelemetrySettings, s.obsrecv, s.consumers)
	if err != nil {
		return err
	}
	s.rcv = rcv
	return rcv.Start(ctx, host)
}

func (s *shared) Shutdown(ctx context.Context) error {
	if s.rcv == nil {
		return nil
	}
	return s.rcv.Shutdown(ctx)
}
