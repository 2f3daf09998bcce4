//go:build linux

package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The kernel side per connection sums, round by round, each program's
// time above its empty program times its runs per connection, and only
// the workload asked for.
func TestOverPerUnit(t *testing.T) {
	egress := kernelProgram{"netflow_egress", "cgroup_skb/egress"}
	send := kernelProgram{"netflow_send", "tp_btf/tcp_sendmsg_locked"}
	figs := map[string]*kernelFigure{
		"churn/netflow_egress": {program: egress, nsPerRun: []float64{300, 400}, emptyNsPerRun: []float64{60, 100}, runsPerUnit: []float64{10, 10}},
		"churn/netflow_send":   {program: send, nsPerRun: []float64{200, 150}, emptyNsPerRun: []float64{70, 50}, runsPerUnit: []float64{2, 2}},
		"bulk/netflow_egress":  {program: egress, nsPerRun: []float64{90, 90}, emptyNsPerRun: []float64{60, 60}, runsPerUnit: []float64{40, 40}},
	}
	tests := []struct {
		name string
		keep func(kernelProgram) bool
		want []float64
	}{
		{"all", nil, []float64{(240*10 + 130*2) / 1000.0, (300*10 + 100*2) / 1000.0}},
		{"fallback", isFallback, []float64{130 * 2 / 1000.0, 100 * 2 / 1000.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.InDeltaSlice(t, tt.want, overPerUnit(figs, "churn", tt.keep), 1e-9)
		})
	}
}
