//go:build linux

package main

import (
	"bufio"
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

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/netflowtcpend/netflowtcpend/internal/otlpsink"
)

// sink is the OTLP/HTTP endpoint the collector exports to. It counts the
// records of each workload server port and the socket cookies it saw, to
// find lost and duplicated records.
type sink struct {
	ln net.Listener

	mu      sync.Mutex
	byPort  map[int64]int
	cookies map[int64]map[int64]int
}

func newSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{ln: ln, byPort: map[int64]int{}, cookies: map[int64]map[int64]int{}}
	go http.Serve(ln, otlpsink.Handler(s.consume)) //nolint:errcheck // ends with the listener
	return s, nil
}

func (s *sink) consume(ld plog.Logs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	otlpsink.ForEach(ld, func(_ pcommon.Resource, lr plog.LogRecord) {
		a := lr.Attributes()
		// The workload server's port is one of the two.
		sp, _ := a.Get("source.port")
		dp, _ := a.Get("destination.port")
		cookie, _ := a.Get("netflow.socket.cookie")
		for _, p := range []int64{sp.Int(), dp.Int()} {
			s.byPort[p]++
			if s.cookies[p] == nil {
				s.cookies[p] = map[int64]int{}
			}
			s.cookies[p][cookie.Int()]++
		}
	})
}

// records returns the records for port and how many were duplicates.
func (s *sink) records(port uint16) (records, duplicates int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byPort[int64(port)], s.byPort[int64(port)] - len(s.cookies[int64(port)])
}

// collector is a running dist/otelcol-netflowtcpend.
type collector struct {
	cmd         *exec.Cmd
	metricsPort int
}

type collectorOptions struct {
	ringBufferSize int // 0: the default
	// discard exports nothing (debug exporter, basic verbosity): the cost
	// of the collector alone, without the sink's decoding on this machine.
	discard bool
}

// startCollector starts the collector, outside the bench cgroup (in home),
// watching cgroup, exporting to sink.
func startCollector(binary, dir, cgroup, home string, snk *sink, opts collectorOptions) (*collector, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	ring := ""
	if opts.ringBufferSize != 0 {
		ring = fmt.Sprintf("\n    ring_buffer_size: %d", opts.ringBufferSize)
	}
	exporter := "otlp_http"
	if opts.discard {
		exporter = "debug"
	}
	config := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`receivers:
  netflow_tcp_end:
    cgroup_path: %s%s
exporters:
  otlp_http:
    endpoint: http://%s
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %d
  pipelines:
    logs:
      receivers: [netflow_tcp_end]
      exporters: [%s]
`, cgroup, ring, snk.ln.Addr(), port, exporter)), 0o600); err != nil {
		return nil, err
	}
	homeDir, err := os.Open(home)
	if err != nil {
		return nil, err
	}
	defer homeDir.Close()
	cmd := exec.Command(binary, "--config", config)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(homeDir.Fd())}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	var log strings.Builder
	go func() {
		s := bufio.NewScanner(stderr)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		var once sync.Once
		for s.Scan() {
			if log.Len() < 1<<16 {
				log.WriteString(s.Text() + "\n")
			}
			if strings.Contains(s.Text(), "Everything is ready") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("collector did not start:\n%s", log.String())
	}
	return &collector{cmd: cmd, metricsPort: port}, nil
}

func (c *collector) stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		return fmt.Errorf("collector did not stop")
	}
}

// rss returns the collector's resident memory in bytes.
func (c *collector) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

// metric returns the value of the first Prometheus sample whose name starts
// with prefix (0 when there is none yet).
func (c *collector) metric(prefix string) (float64, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", c.metricsPort))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			return strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	return 0, s.Err()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
