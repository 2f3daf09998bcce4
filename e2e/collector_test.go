//go:build linux

package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testnet"
)

// collectorProcess is a running collector whose log the test keeps.
type collectorProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // cmd.Wait's, once done is closed
	mu   sync.Mutex
	log  strings.Builder
}

// startCollector runs the built collector with config (YAML text) in this
// network namespace, outside the test cgroups (its own connections are not
// watched), and waits until it is ready and ready to shut down on SIGTERM.
func startCollector(t *testing.T, config string) *collectorProcess {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte(config), 0o600))
	return startCommand(t, nil, exec.Command(collectorBinary(t), "--config", path))
}

// startCommand starts cmd, a collector or a command that execs one, in ns
// (nil: this one) with env added, and waits until the collector says it is
// ready; a collector that exits first fails the test with its log.
//
// The collector logs "Everything is ready" before it asks for SIGTERM and
// SIGINT (otelcol's Collector.Run): a SIGTERM in between kills it without
// a shutdown. So it starts with SIGINT ignored, which the Go runtime leaves
// alone until the collector asks for it, in the same call as for SIGTERM:
// once /proc says SIGINT is caught, SIGTERM is too. (Where cmd forks the
// collector rather than execs it, its pid is not cmd's and this wait is
// skipped.)
func startCommand(t *testing.T, ns *testnet.Netns, cmd *exec.Cmd, env ...string) *collectorProcess {
	t.Helper()
	wrapped := exec.Command("/bin/sh", append([]string{"-c", `trap '' INT; exec "$0" "$@"`, cmd.Path}, cmd.Args[1:]...)...)
	wrapped.SysProcAttr = cmd.SysProcAttr
	wrapped.Dir = cmd.Dir
	wrapped.Env = append(cmd.Environ(), env...)
	p := &collectorProcess{cmd: wrapped, done: make(chan struct{})}
	stderr, err := wrapped.StderrPipe()
	require.NoError(t, err)
	if ns != nil {
		require.NoError(t, ns.Start(wrapped))
	} else {
		require.NoError(t, wrapped.Start())
	}
	ready := make(chan struct{})
	go func() {
		s := bufio.NewScanner(stderr)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		var once sync.Once
		for s.Scan() {
			p.mu.Lock()
			p.log.WriteString(s.Text() + "\n")
			p.mu.Unlock()
			if strings.Contains(s.Text(), "Everything is ready") {
				once.Do(func() { close(ready) })
			}
		}
		p.err = wrapped.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = wrapped.Process.Kill() // fails, harmlessly, when it has exited
		<-p.done
	})
	select {
	case <-ready:
	case <-p.done:
		t.Fatalf("collector exited before it was ready (%v); its log:\n%s", p.err, p.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("collector not ready after 30 s; its log:\n%s", p.logText())
	}
	if isCollector(wrapped.Process.Pid) {
		require.Eventually(t, func() bool { return catches(t, wrapped.Process.Pid, syscall.SIGINT) },
			30*time.Second, time.Millisecond, "the collector never asked for SIGINT and SIGTERM")
	}
	return p
}

// isCollector says whether process pid runs the collector binary.
func isCollector(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && strings.HasPrefix(filepath.Base(exe), "otelcol-netflowtcpend")
}

// catches says whether process pid has a handler for sig (SigCgt in
// /proc/PID/status).
func catches(t *testing.T, pid int, sig syscall.Signal) bool {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(status), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			bits, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			require.NoError(t, err)
			return bits&(1<<(sig-1)) != 0
		}
	}
	t.Fatalf("no SigCgt in /proc/%d/status", pid)
	return false
}

func (p *collectorProcess) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// stop ends the collector with SIGTERM, which passes on every record it
// holds, and checks that it exits cleanly.
func (p *collectorProcess) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
		require.NoError(t, p.err, "the collector must stop cleanly; its log:\n%s", p.logText())
	case <-time.After(20 * time.Second):
		t.Fatalf("the collector did not stop after SIGTERM; its log:\n%s", p.logText())
	}
}
