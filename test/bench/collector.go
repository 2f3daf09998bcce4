//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

type collectorOptions struct {
	ringBufferSize int // 0: the default
	// discard exports nothing (debug exporter, basic verbosity): the cost
	// of the collector alone, without the sink's decoding on this machine.
	discard bool
	// metrics adds a metrics pipeline beside the logs one (one receiver
	// serves both), with the metrics config's other settings at their
	// defaults but a 10 s interval, exporting to the same place as the
	// logs.
	metrics bool
	args    []string // further command-line arguments
	env     []string // added to its environment
}

// startCollector starts the collector, outside the bench cgroup (in home),
// watching cgroup, exporting to sink.
func startCollector(binary, dir, cgroup, home string, snk *loadtest.Sink, opts collectorOptions) (*loadtest.Collector, error) {
	ring := ""
	if opts.ringBufferSize != 0 {
		ring = fmt.Sprintf("\n    ring_buffer_size: %d", opts.ringBufferSize)
	}
	exporter := "otlp_http"
	if opts.discard {
		exporter = "debug"
	}
	metrics, pipeline := "", ""
	if opts.metrics {
		metrics = "\n    metrics:\n      interval: 10s"
		pipeline = fmt.Sprintf(`
    metrics:
      receivers: [netflow_tcp_end]
      exporters: [%s]`, exporter)
	}
	config := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`receivers:
  netflow_tcp_end:
    cgroup_path: %s%s%s
exporters:
  otlp_http:
    endpoint: http://%s
  debug:
    verbosity: basic
service:
  pipelines:
    logs:
      receivers: [netflow_tcp_end]
      exporters: [%s]%s
`, cgroup, ring, metrics, snk.Addr(), exporter, pipeline)), 0o600); err != nil {
		return nil, err
	}
	return loadtest.StartCollector(loadtest.CollectorOptions{Binary: binary, Configs: []string{config}, Args: opts.args, Env: opts.env, Cgroup: home})
}
