//go:build linux

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/bpfids"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/otlpsink"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// newSink serves OTLP/HTTP on loopback for the test and returns the
// collector's endpoint for it.
func newSink(t *testing.T) (*otlpServer, string) {
	t.Helper()
	sink := &otlpServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: otlpsink.Handler(sink.consume)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return sink, "http://" + ln.Addr().String()
}

// receiverConfig is a collector configuration with one netflow_tcp_end
// receiver per name, each on its cgroup and in a pipeline of its own that
// exports over OTLP/HTTP to its endpoint.
func receiverConfig(names, cgroups, endpoints []string) string {
	var recv, exp, pipes strings.Builder
	for i, name := range names {
		fmt.Fprintf(&recv, "  netflow_tcp_end/%s:\n    cgroup_path: %s\n", name, cgroups[i])
		fmt.Fprintf(&exp, "  otlp_http/%s:\n    endpoint: %s\n    retry_on_failure:\n      initial_interval: 100ms\n", name, endpoints[i])
		fmt.Fprintf(&pipes, "    logs/%[1]s:\n      receivers: [netflow_tcp_end/%[1]s]\n      processors: [batch]\n      exporters: [otlp_http/%[1]s]\n", name)
	}
	return fmt.Sprintf(`
receivers:
%sprocessors:
  batch:
    timeout: 100ms
exporters:
%sservice:
  telemetry:
    metrics:
      level: none
  pipelines:
%s`, recv.String(), exp.String(), pipes.String())
}

// loopbackConn makes a loopback connection whose two sockets are in cg,
// closes it and returns the cookies of its sockets.
func loopbackConn(t *testing.T, cg *testnet.Cgroup) []uint64 {
	t.Helper()
	client, server := cg.Pair(t)
	var cookies []uint64
	for _, c := range []*net.TCPConn{client, server} {
		cookie, err := testnet.Cookie(c)
		require.NoError(t, err)
		cookies = append(cookies, cookie)
	}
	require.NoError(t, client.Close())
	require.NoError(t, server.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := server.Read(make([]byte, 1))
	require.Error(t, err, "the client's FIN")
	require.NoError(t, server.Close())
	return cookies
}

// records returns every record of the sink by socket cookie.
func (s *otlpServer) all() map[uint64][]plog.LogRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[uint64][]plog.LogRecord{}
	for _, lr := range s.records {
		v, _ := lr.Attributes().Get("netflow.socket.cookie")
		out[uint64(v.Int())] = append(out[uint64(v.Int())], lr)
	}
	return out
}

// A collector killed with SIGKILL runs no shutdown, yet leaves nothing
// behind: its links and programs go with its file descriptors, within a
// second; nothing is pinned. The next collector starts on the same cgroup
// and delivers records.
func TestCollectorKilledLeavesNothingAttached(t *testing.T) {
	collectorBinary(t)
	testenv.RequireRoot(t)
	cg := testnet.NewCgroup(t)
	sink, endpoint := newSink(t)
	config := receiverConfig([]string{"x"}, []string{cg.Path}, []string{endpoint})

	c := startCollector(t, config)
	held, err := bpfids.Held(c.PID())
	require.NoError(t, err)
	attached, err := bpfids.Attached(cg.Path)
	require.NoError(t, err)
	require.Len(t, attached, len(bpfids.CgroupAttachTypes), "one program per attach point")
	require.Subset(t, held.Progs, attached, "the programs attached to the cgroup are the collector's")
	t.Logf("the collector holds %v", held)

	require.NoError(t, c.Signal(syscall.SIGKILL))
	killed := time.Now()
	var detached, gone time.Duration
	var alive bpfids.IDs
	for detached == 0 || gone == 0 {
		attached, err = bpfids.Attached(cg.Path)
		require.NoError(t, err)
		if detached == 0 && len(attached) == 0 {
			detached = time.Since(killed)
		}
		alive, err = held.Alive()
		require.NoError(t, err)
		if gone == 0 && alive.Len() == 0 {
			gone = time.Since(killed)
		}
		if time.Since(killed) > time.Second {
			break
		}
		time.Sleep(time.Millisecond)
	}
	require.NotZero(t, detached, "programs still attached to the cgroup a second after SIGKILL: %v", attached)
	require.NotZero(t, gone, "still in the kernel a second after SIGKILL: %v", alive)
	t.Logf("after SIGKILL: nothing attached after %v, every program, map and link gone after %v", detached, gone)

	// The next start.
	c = startCollector(t, config)
	cookies := loopbackConn(t, cg)
	stopCollector(t, c)
	got := sink.all()
	for _, cookie := range cookies {
		assert.Len(t, got[cookie], 1, "socket %d", cookie)
	}
}

// Two receivers in one collector work independently: each has its own
// programs, attached to its own cgroup, and its own ring buffer. A socket
// is reported by every receiver whose cgroup holds it: once by each, in
// each one's pipeline. With disjoint cgroups that is once; a socket in a
// cgroup nested in another receiver's, or in the one cgroup both watch, is
// reported by both.
func TestTwoReceiversInOneCollector(t *testing.T) {
	collectorBinary(t)
	testenv.RequireRoot(t)
	for _, layout := range []string{"disjoint", "nested", "same"} {
		t.Run(layout, func(t *testing.T) {
			a := testnet.NewCgroup(t)
			var b *testnet.Cgroup
			switch layout {
			case "disjoint":
				b = testnet.NewCgroup(t)
			case "nested":
				b = a.Child(t, "inner")
			case "same":
				b = a
			}
			sinkA, endpointA := newSink(t)
			sinkB, endpointB := newSink(t)
			c := startCollector(t, receiverConfig([]string{"a", "b"}, []string{a.Path, b.Path}, []string{endpointA, endpointB}))
			for _, cg := range []*testnet.Cgroup{a, b} {
				attached, err := bpfids.Attached(cg.Path)
				require.NoError(t, err)
				want := len(bpfids.CgroupAttachTypes)
				if layout == "same" {
					want *= 2
				}
				assert.Len(t, attached, want, "each receiver attaches its own programs to its own cgroup")
			}

			inA := loopbackConn(t, a)
			inB := loopbackConn(t, b)
			stopCollector(t, c) // every record is exported before the collector exits

			gotA, gotB := sinkA.all(), sinkB.all()
			want := map[*otlpServer][]uint64{sinkA: inA, sinkB: inB}
			switch layout {
			case "nested":
				want[sinkA] = append(want[sinkA], inB...) // b's sockets are in a as well
			case "same":
				all := append(slices.Clone(inA), inB...)
				want[sinkA], want[sinkB] = all, all
			}
			for sink, got := range map[*otlpServer]map[uint64][]plog.LogRecord{sinkA: gotA, sinkB: gotB} {
				name := map[*otlpServer]string{sinkA: "receiver a", sinkB: "receiver b"}[sink]
				assert.ElementsMatch(t, want[sink], keys(got), "%s: the sockets of its cgroup and below, and no other", name)
				for cookie, records := range got {
					assert.Len(t, records, 1, "%s: socket %d reported once", name, cookie)
				}
			}
			// A record carries the socket's own cgroup, whichever receiver
			// reported it.
			for _, in := range []struct {
				cg      *testnet.Cgroup
				cookies []uint64
			}{{a, inA}, {b, inB}} {
				cg, cookies := in.cg, in.cookies
				var st syscall.Stat_t
				require.NoError(t, syscall.Stat(cg.Path, &st))
				for _, cookie := range cookies {
					for _, lr := range append(gotA[cookie], gotB[cookie]...) {
						id, _ := lr.Attributes().Get("netflow.cgroup.id")
						assert.EqualValues(t, st.Ino, id.Int(), "cgroup of socket %d", cookie)
					}
				}
			}
		})
	}
}

func keys[K comparable, V any](m map[K]V) []K {
	var out []K
	for k := range m {
		out = append(out, k)
	}
	return out
}
