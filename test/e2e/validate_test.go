//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
)

// The collector's validate command says what the receiver's validation
// says: the key, what is wrong, and the fix.
func TestValidateCommandNamesTheKeyAndTheFix(t *testing.T) {
	bin := collectorBinary(t)
	root, err := cgroupv2.Root()
	require.NoError(t, err)
	v1 := ""
	if mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup")); err == nil && len(mounts) > 0 {
		v1 = mounts[0].Mountpoint
	}

	for _, tt := range []struct {
		name, block string
		want        []string
	}{
		{"a file", "cgroup_path: " + root + "/cgroup.procs", []string{
			"receivers::netflow_tcp_end: cgroup_path: " + root + "/cgroup.procs is a file: not a directory on a cgroup v2 filesystem; " +
				"use a cgroup v2 directory or leave it empty for the root"}},
		{"cgroup v1", "cgroup_path: " + v1, []string{
			"cgroup_path: " + v1 + " is in a cgroup v1 hierarchy; eBPF programs attach to cgroup v2 only (cgroup v2 is mounted at " + root + ")"}},
		{"several at once", "ring_buffer_size: 1000\nflush_interval: 200\nfilters: {include: {ports: [443]}, exclude: {ports: [443]}}", []string{
			"ring_buffer_size 1000 must be a power of two from 65536 (64 KiB) to 1073741824 (1 GiB)",
			"flush_interval 200ns is shorter than 1ms; write a duration with its unit, e.g. 200ms (a bare number is nanoseconds)",
			"filters.include.ports and filters.exclude.ports both list 443: an exclude wins, so including it selects nothing; remove it from one of them"}},
		{"a wrong type", "ring_buffer_size: 8MiB", []string{
			`error reading configuration for "netflow_tcp_end"`, "'ring_buffer_size' expected type 'int', got unconvertible type 'string'"}},
		{"a map for a list", "filters: {include: {ports: {https: 443}}}", []string{
			"'filters.include.ports' source data must be an array or slice, got map"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "cgroup v1" && v1 == "" {
				t.Skip("this host mounts no cgroup v1 hierarchy")
			}
			config := filepath.Join(t.TempDir(), "config.yaml")
			require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(`
receivers:
  netflow_tcp_end:
    %s
exporters:
  debug:
service:
  pipelines:
    logs:
      receivers: [netflow_tcp_end]
      exporters: [debug]
`, strings.ReplaceAll(tt.block, "\n", "\n    "))), 0o600))
			out, err := exec.Command(bin, "validate", "--config", config).CombinedOutput()
			require.Error(t, err, "validate must fail: %s", out)
			for _, want := range tt.want {
				assert.Contains(t, string(out), want)
			}
		})
	}
}
