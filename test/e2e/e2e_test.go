//go:build linux

// Package e2e runs the built collector binary (dist/otelcol-netflowtcpend)
// against an OTLP/HTTP endpoint that the test serves, and checks that real
// connections arrive there as records.
package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/otlpsink"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

const binaryEnv = "NETFLOWTCPEND_BINARY"

// otlpServer collects the log records that OTLP/HTTP exporters send it.
type otlpServer struct {
	mu      sync.Mutex
	records []plog.LogRecord
}

func (s *otlpServer) consume(ld plog.Logs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	otlpsink.ForEach(ld, func(_ pcommon.Resource, lr plog.LogRecord) { s.records = append(s.records, lr) })
}

// byCookie returns the records of the given socket.
func (s *otlpServer) byCookie(cookie uint64) []plog.LogRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []plog.LogRecord
	for _, lr := range s.records {
		if v, ok := lr.Attributes().Get("netflow.socket.cookie"); ok && uint64(v.Int()) == cookie {
			out = append(out, lr)
		}
	}
	return out
}

func TestCollectorExportsConnectionEndsOverOTLPHTTP(t *testing.T) {
	collectorBinary(t)
	testenv.RequireRoot(t)

	sink := &otlpServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: otlpsink.Handler(sink.consume)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	cg := testnet.NewCgroup(t)
	// The collector starts outside the test cgroup: its own export
	// connections are not monitored.
	collector := startCollector(t, fmt.Sprintf(`
receivers:
  netflow_tcp_end:
    cgroup_path: %s
processors:
  batch:
    timeout: 100ms
exporters:
  otlp_http:
    endpoint: http://%s
    retry_on_failure:
      initial_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [netflow_tcp_end]
      processors: [batch]
      exporters: [otlp_http]
`, cg.Path, ln.Addr()))

	type socket struct {
		cookie uint64
		dir    string
	}
	var sockets []socket
	for range 3 {
		client, server := cg.Pair(t)
		for _, s := range []struct {
			c   *net.TCPConn
			dir string
		}{{client, "outgoing"}, {server, "incoming"}} {
			cookie, err := testnet.Cookie(s.c)
			require.NoError(t, err)
			sockets = append(sockets, socket{cookie, s.dir})
		}
		require.NoError(t, client.Close())
		_, err = io.Copy(io.Discard, server)
		require.NoError(t, err)
		require.NoError(t, server.Close())
	}

	for _, s := range sockets {
		var records []plog.LogRecord
		require.Eventually(t, func() bool {
			records = sink.byCookie(s.cookie)
			return len(records) > 0
		}, 20*time.Second, 50*time.Millisecond, "no record for socket %d", s.cookie)
		require.Len(t, records, 1)
		lr := records[0]
		assert.Equal(t, "netflow.tcp.end", lr.EventName())
		dir, _ := lr.Attributes().Get("netflow.direction")
		assert.Equal(t, s.dir, dir.Str())
		addr, _ := lr.Attributes().Get("source.address")
		assert.Equal(t, "127.0.0.1", addr.Str())
		assert.WithinDuration(t, time.Now(), lr.Timestamp().AsTime(), 30*time.Second)
	}

	stopCollector(t, collector)
}

// Configurations written for the receiver's first type name still validate,
// and a type the collector does not know fails: the check is real.
func TestCollectorAcceptsTheDeprecatedTypeName(t *testing.T) {
	bin := collectorBinary(t)
	for _, tt := range []struct {
		typ string
		ok  bool
	}{{"netflow_tcp_end", true}, {"netflowtcpend", true}, {"netflow_tcp_ends", false}} {
		t.Run(tt.typ, func(t *testing.T) {
			config := filepath.Join(t.TempDir(), "config.yaml")
			require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(`
receivers:
  %[1]s:
exporters:
  debug:
service:
  pipelines:
    logs:
      receivers: [%[1]s]
      exporters: [debug]
`, tt.typ)), 0o600))
			out, err := exec.Command(bin, "validate", "--config", config).CombinedOutput()
			if tt.ok {
				assert.NoError(t, err, "%s", out)
			} else {
				require.Error(t, err)
				assert.Contains(t, string(out), tt.typ)
			}
		})
	}
}

// collectorBinary is the collector that make test built.
func collectorBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping under -short: this test runs the built collector (make test runs it)")
	}
	bin := os.Getenv(binaryEnv)
	if bin == "" {
		if testenv.InCI() {
			t.Fatalf("%s is not set; run this through make test, which builds the collector", binaryEnv)
		}
		t.Skipf("skipping: %s is not set (make test builds the collector and sets it)", binaryEnv)
	}
	return bin
}
