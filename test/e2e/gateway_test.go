//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/otlpsink"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

// Two nodes on one machine, each an agent collector in a network and UTS
// namespace of its own watching a cgroup of its own, export over OTLP/gRPC
// to one gateway collector, which writes what it receives to a file: every
// record arrives there exactly once, with its node's host.name. The agents
// and the gateway run the shipped examples/agent.yaml and
// examples/gateway.yaml, with only the addresses and the cgroup set.
func TestAgentsExportToAGateway(t *testing.T) {
	bin := collectorBinary(t)
	testenv.RequireRoot(t)

	type node struct {
		name     string
		ns       *testnet.Netns
		hostAddr netip.Addr
		cg       *testnet.Cgroup
		agent    *loadtest.Collector
		cookies  []uint64
	}
	nodes := []*node{{name: "node-a"}, {name: "node-b"}}
	for i, n := range nodes {
		n.ns, n.hostAddr = testnet.NewNode(t, i+1)
		n.cg = testnet.NewCgroup(t)
	}

	// The gateway listens on this host's end of both links.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	out := filepath.Join(t.TempDir(), "netflow.jsonl")
	gateway := startCommand(t, nil, exec.Command(bin,
		"--config", examplePath(t, "gateway.yaml"),
		"--config", fmt.Sprintf("yaml:receivers::otlp::protocols::grpc::endpoint: 0.0.0.0:%d", port),
		"--config", "yaml:service::telemetry::metrics::level: none"),
		"NETFLOW_FILE="+out)

	for _, n := range nodes {
		// hostname sets the name only in the new UTS namespace.
		cmd := exec.Command("/bin/sh", "-c", `hostname "$NODE_NAME" && exec "$@"`, "sh", bin,
			"--config", examplePath(t, "agent.yaml"),
			"--config", "yaml:receivers::netflow_tcp_end::cgroup_path: "+n.cg.Path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUTS}
		n.agent = startCommand(t, n.ns, cmd,
			"NODE_NAME="+n.name, fmt.Sprintf("GATEWAY_ENDPOINT=%s:%d", n.hostAddr, port))
	}

	// Real traffic inside each node: connections over the node's loopback
	// between sockets of its cgroup (two records each).
	for _, n := range nodes {
		for range 3 {
			n.cookies = append(n.cookies, connectAndClose(t, n.ns, n.cg)...)
		}
	}

	want := map[uint64]string{}
	for _, n := range nodes {
		for _, c := range n.cookies {
			want[c] = n.name
		}
	}
	var got map[uint64][]string
	require.Eventually(t, func() bool {
		got = hostNamesByCookie(t, out)
		for c := range want {
			if len(got[c]) == 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "records of every node reach the gateway")

	// Stop the agents (flushing), then the gateway: nothing more arrives.
	for _, n := range nodes {
		stopCollector(t, n.agent)
	}
	stopCollector(t, gateway)
	got = hostNamesByCookie(t, out)
	t.Logf("records at the gateway, by socket cookie: %v", got)
	for c, name := range want {
		assert.Equal(t, []string{name}, got[c], "socket %d: exactly one record, from its node", c)
	}
	for c, names := range got {
		if _, ok := want[c]; !ok {
			assert.Failf(t, "a record of a socket no node made", "cookie %d from %v", c, names)
		}
	}
}

// examplePath is a configuration of examples/, as shipped.
func examplePath(t *testing.T, name string) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "..", "examples", name))
	require.NoError(t, err)
	return path
}

// connectAndClose makes one connection over the loopback of ns between two
// sockets of cg and closes it; it returns both sockets' cookies.
func connectAndClose(t *testing.T, ns *testnet.Netns, cg *testnet.Cgroup) []uint64 {
	t.Helper()
	var cookies []uint64
	cg.Run(t, func() {
		require.NoError(t, ns.Do(func() error {
			ln, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
			if err != nil {
				return err
			}
			defer ln.Close()
			client, err := testnet.Dial(testnet.AddrPort(ln.Addr()))
			if err != nil {
				return err
			}
			server, err := ln.AcceptTCP()
			if err != nil {
				return err
			}
			for _, c := range []*net.TCPConn{client, server} {
				cookie, err := testnet.Cookie(c)
				if err != nil {
					return err
				}
				cookies = append(cookies, cookie)
			}
			if err := client.Close(); err != nil {
				return err
			}
			return server.Close()
		}))
	})
	return cookies
}

// hostNamesByCookie reads the gateway's file (OTLP JSON, one request per
// line) and returns, per socket cookie, the host.name of each record.
func hostNamesByCookie(t *testing.T, path string) map[uint64][]string {
	t.Helper()
	out := map[uint64][]string{}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return out
	}
	require.NoError(t, err)
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(make([]byte, 1<<20), 64<<20)
	var u plog.JSONUnmarshaler
	for s.Scan() {
		line := s.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		logs, err := u.UnmarshalLogs(line)
		if err != nil {
			continue // a line still being written
		}
		otlpsink.ForEach(logs, func(res pcommon.Resource, lr plog.LogRecord) {
			cookie, ok := lr.Attributes().Get("netflow.socket.cookie")
			if !ok {
				return
			}
			host, _ := res.Attributes().Get("host.name")
			out[uint64(cookie.Int())] = append(out[uint64(cookie.Int())], host.Str())
		})
	}
	return out
}
