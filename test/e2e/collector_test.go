//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

// startCollector runs the built collector with config (YAML text) in this
// network namespace, outside the test cgroups (its own connections are not
// watched), and waits until it is ready and can be stopped.
func startCollector(t *testing.T, config string) *loadtest.Collector {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte(config), 0o600))
	return startCommand(t, nil, exec.Command(collectorBinary(t), "--config", path))
}

// startCommand starts cmd, a collector or a command that execs one, in ns
// (nil: this one) with env added, and waits until it is ready; the test
// fails with the collector's log if it is not. It is killed after the test.
func startCommand(t *testing.T, ns *testnet.Netns, cmd *exec.Cmd, env ...string) *loadtest.Collector {
	t.Helper()
	cmd.Env = append(cmd.Environ(), env...)
	start := (*exec.Cmd).Start
	if ns != nil {
		start = ns.Start
	}
	c, err := loadtest.Start(cmd, start)
	require.NoError(t, err)
	t.Cleanup(c.Kill)
	return c
}

// stopCollector stops c with SIGTERM, which passes on every record it
// holds, and checks that it exits cleanly.
func stopCollector(t *testing.T, c *loadtest.Collector) {
	t.Helper()
	require.NoError(t, c.Stop(), "the collector must stop cleanly; its log:\n%s", c.Log())
}
