//go:build linux

// Package loadtest drives the built collector under load, for make bench,
// make soak and the tests that run the collector under backpressure: it
// starts dist/otelcol-netflowtcpend and reads its memory and its own
// metrics (Collector), serves the OTLP/HTTP endpoint it exports to, which
// can stall or fail on demand and counts records per socket cookie (Sink),
// and makes short-lived connections, optionally after a DNS lookup each,
// in process or in a worker process inside the watched cgroup (Churn,
// Worker). Nothing here ships in the collector.
package loadtest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Collector is a running collector.
type Collector struct {
	cmd         *exec.Cmd
	MetricsPort int // its own metrics, Prometheus text at /metrics

	done chan struct{} // closed when it has exited
	err  error         // cmd.Wait's, once done is closed
	mu   sync.Mutex
	log  strings.Builder
}

// ProductionEnv is the environment examples/production.yaml's header runs the
// collector with: GOMEMLIMIT bounds the Go heap, GOGC=200 trades heap for
// CPU below that bound.
var ProductionEnv = []string{"GOMEMLIMIT=160MiB", "GOGC=200"}

// CollectorOptions say how to run the collector.
type CollectorOptions struct {
	Binary string
	// Configs are the --config arguments (files or yaml: overrides), in
	// order. The metrics reader on 127.0.0.1:MetricsPort is added last.
	Configs []string
	Args    []string // further arguments, e.g. --feature-gates=pdata.useProtoPooling
	Env     []string // added to this process's environment
	// Cgroup is the cgroup v2 directory to start it in ("": this
	// process's). The collector must not run in the cgroup it watches, or
	// its own exports would be records too (exclude_self aside).
	Cgroup string
	// MetricsPort is where its metrics are served; 0 picks a free port.
	MetricsPort int
}

// StartCollector starts the collector and waits until it is ready.
func StartCollector(o CollectorOptions) (*Collector, error) {
	port := o.MetricsPort
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	args := []string{}
	for _, c := range o.Configs {
		args = append(args, "--config", c)
	}
	args = append(args, "--config", "yaml:service::telemetry::metrics::readers: "+
		fmt.Sprintf("[{pull: {exporter: {prometheus: {host: 127.0.0.1, port: %d}}}}]", port))
	args = append(args, o.Args...)
	cmd := exec.Command(o.Binary, args...)
	cmd.Env = append(os.Environ(), o.Env...)
	if o.Cgroup != "" {
		dir, err := os.Open(o.Cgroup)
		if err != nil {
			return nil, err
		}
		defer dir.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	}
	c, err := Start(cmd, nil)
	if err != nil {
		return nil, err
	}
	c.MetricsPort = port
	return c, nil
}

// Start starts cmd, a collector or a command that execs one, with start
// (nil: cmd.Start; a test starts it in a network namespace of its own), and
// waits until the collector says it is ready and can be stopped.
//
// The collector logs "Everything is ready" before it asks for SIGTERM and
// SIGINT (otelcol's Collector.Run): a SIGTERM in between kills it without
// a shutdown. So it starts with SIGINT ignored, which the Go runtime leaves
// alone until the collector asks for it, in the same call as for SIGTERM:
// once /proc says SIGINT is caught, SIGTERM is too. (Where cmd forks the
// collector rather than execs it, its pid is not cmd's and that wait is
// skipped.)
func Start(cmd *exec.Cmd, start func(*exec.Cmd) error) (*Collector, error) {
	wrapped := exec.Command("/bin/sh", append([]string{"-c", `trap '' INT; exec "$0" "$@"`, cmd.Path}, cmd.Args[1:]...)...)
	wrapped.SysProcAttr, wrapped.Dir, wrapped.Env = cmd.SysProcAttr, cmd.Dir, cmd.Environ()
	stderr, err := wrapped.StderrPipe()
	if err != nil {
		return nil, err
	}
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if err := start(wrapped); err != nil {
		return nil, err
	}
	c := &Collector{cmd: wrapped, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		s := bufio.NewScanner(stderr)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		var once sync.Once
		for s.Scan() {
			c.mu.Lock()
			if c.log.Len() < 4<<20 {
				c.log.WriteString(s.Text() + "\n")
			}
			c.mu.Unlock()
			if strings.Contains(s.Text(), "Everything is ready") {
				once.Do(func() { close(ready) })
			}
		}
		c.err = wrapped.Wait()
		close(c.done)
	}()
	timeout := time.After(60 * time.Second)
	select {
	case <-ready:
	case <-c.done:
		return nil, fmt.Errorf("collector exited before it was ready (%w); its log:\n%s", c.err, c.Log())
	case <-timeout:
		c.Kill()
		return nil, fmt.Errorf("collector not ready after 60 s; its log:\n%s", c.Log())
	}
	pid := wrapped.Process.Pid
	if !isCollector(pid) {
		return c, nil
	}
	for {
		if caught, err := catches(pid, syscall.SIGINT); err != nil || caught {
			return c, nil // an error: it has exited, which Stop reports
		}
		select {
		case <-timeout:
			c.Kill()
			return nil, errors.New("the collector never asked for SIGINT and SIGTERM")
		case <-time.After(time.Millisecond):
		}
	}
}

// isCollector says whether process pid runs the collector binary.
func isCollector(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && strings.HasPrefix(filepath.Base(exe), "otelcol-netflowtcpend")
}

// catches says whether process pid has a handler for sig (SigCgt in
// /proc/PID/status).
func catches(pid int, sig syscall.Signal) (bool, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			bits, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return bits&(1<<(sig-1)) != 0, err
		}
	}
	return false, fmt.Errorf("no SigCgt in /proc/%d/status", pid)
}

// Log returns what the collector has logged (its first 4 MiB).
func (c *Collector) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

// PID returns the collector's process id.
func (c *Collector) PID() int { return c.cmd.Process.Pid }

// Signal sends the collector sig.
func (c *Collector) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// Stop ends the collector with SIGTERM, which flushes its pipeline, and
// kills it if it has not exited after 30 s. It returns how the collector
// exited: nil for a clean shutdown.
func (c *Collector) Stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return c.err
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return errors.New("collector did not stop within 30 s of SIGTERM")
	}
}

// Kill ends the collector at once; for cleanups.
func (c *Collector) Kill() {
	_ = c.cmd.Process.Kill() // fails, harmlessly, when it has exited
	<-c.done
}

// CPU returns the CPU time the collector has used (user and system, all
// its threads).
func (c *Collector) CPU() (time.Duration, error) {
	return ProcessCPU(c.cmd.Process.Pid)
}

// ProcessCPU returns the CPU time process pid has used (utime + stime of
// /proc/PID/stat), at the kernel's clock tick (10 ms) resolution.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing parenthesis (field 3, the state).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/PID/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go runs on.
const clockTicks = 100

// RSS returns the collector's resident memory in bytes.
func (c *Collector) RSS() (int64, error) {
	return RSS(c.cmd.Process.Pid)
}

// RSS returns the resident memory of process pid in bytes (VmRSS).
func RSS(pid int) (int64, error) { return statusBytes(pid, "VmRSS") }

// PeakRSS returns the most resident memory process pid has had, in bytes
// (VmHWM).
func PeakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM") }

// statusBytes reads a field in kB of /proc/PID/status, in bytes.
func statusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s", field)
}

// Metrics are the collector's own metrics: each metric's samples summed
// over their labels, by name.
type Metrics map[string]float64

// Get returns a metric by name, with or without the _total suffix that the
// Prometheus exporter gives counters (0 when absent: not yet recorded).
func (m Metrics) Get(name string) float64 {
	if v, ok := m[name]; ok {
		return v
	}
	return m[name+"_total"]
}

// Metrics scrapes the collector's own metrics.
func (c *Collector) Metrics() (Metrics, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", c.MetricsPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	m := Metrics{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		m[name] += v
	}
	return m, s.Err()
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
