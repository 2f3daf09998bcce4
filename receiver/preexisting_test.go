//go:build linux

package receiver

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/sockscan"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// Ports of the direction tests, in a network namespace whose ephemeral port
// range is portLow..portHigh.
const (
	portLow, portHigh = 20000, 29999
	portInside        = 20500 // a listener whose port lies in the range
	portOutside       = 8080
	fromRange         = -1 // the client's port: connect() chooses it
	bindZero          = 0  // bind(address, 0) chooses it
)

// side is what a test expects of one socket: its direction, and the rule of
// sockscan.Classify that decides it.
type side struct {
	dir  string
	rule sockscan.Rule
}

// gone: the socket was closed before Start: it is in no process's files, as
// the peer on a remote host would be. Its connection ended, for it, before
// Start (its FIN), so it yields no record.
var gone = side{"", sockscan.RuleNone}

// TestDirectionOfConnectionsOpenBeforeStart runs each rule of the scan at
// start on real sockets, over IPv4 and IPv6: the rule that decides (from a
// scan of its own) and the direction in the records.
func TestDirectionOfConnectionsOpenBeforeStart(t *testing.T) {
	h := newHarness(t)
	var cases []openCase
	for _, tt := range []struct {
		name    string
		port    uint16 // the listener's
		backlog int    // listen(fd, backlog)
		keep    bool   // the listener stays open
		from    int    // the client's port: fromRange, bindZero or a port
		gone    string // "client" or "server": closed before Start
		client  side
		server  side
	}{
		{
			name: "listener closed after the accept",
			port: portOutside, backlog: 16, from: fromRange,
			client: side{"outgoing", sockscan.RuleConnect}, server: side{"incoming", sockscan.RuleBacklog},
		},
		{
			name: "listener in the ephemeral range, open",
			port: portInside, backlog: 16, keep: true, from: fromRange,
			client: side{"outgoing", sockscan.RuleConnect}, server: side{"incoming", sockscan.RuleBacklog},
		},
		{
			name: "listener in the ephemeral range, closed",
			port: portInside, backlog: 16, from: fromRange,
			client: side{"outgoing", sockscan.RuleConnect}, server: side{"incoming", sockscan.RuleBacklog},
		},
		{
			name: "listen(0) in the ephemeral range, open",
			port: portInside, backlog: 0, keep: true, from: fromRange,
			client: side{"outgoing", sockscan.RuleConnect}, server: side{"incoming", sockscan.RuleListener},
		},
		{
			name: "listen(0), closed: the client's bind bucket decides",
			port: portOutside, backlog: 0, from: fromRange,
			client: side{"outgoing", sockscan.RuleConnect}, server: side{"incoming", sockscan.RulePeer},
		},
		{
			name: "listen(0) in the ephemeral range, closed: the client's bind bucket decides",
			port: portInside, backlog: 0, from: fromRange,
			client: side{"outgoing", sockscan.RuleConnect}, server: side{"incoming", sockscan.RulePeer},
		},
		{
			name: "listener's backlog decides for a client that bound its port",
			port: portOutside, backlog: 16, from: 2000,
			client: side{"outgoing", sockscan.RulePeer}, server: side{"incoming", sockscan.RuleBacklog},
		},
		{
			// Both ports were chosen by bind(): nothing tells which end
			// connected.
			name: "unknown: listen(0) closed, a client that bound its port",
			port: portOutside, backlog: 0, from: 2000,
			client: side{"unknown", sockscan.RuleNone}, server: side{"unknown", sockscan.RuleNone},
		},
		{
			name: "unknown: listen(0) closed, peer gone, both ports in the range",
			port: portInside, backlog: 0, from: fromRange, gone: "client",
			client: gone, server: side{"unknown", sockscan.RuleNone},
		},
		{
			name: "port range: listen(0) closed, peer gone",
			port: portOutside, backlog: 0, from: fromRange, gone: "client",
			client: gone, server: side{"incoming", sockscan.RulePortRange},
		},
		{
			name: "port range: a client that bound address and port 0, peer gone",
			port: portOutside, backlog: 16, from: bindZero, gone: "server",
			client: side{"outgoing", sockscan.RulePortRange}, server: gone,
		},
	} {
		for _, lo := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
			// Each case in a network namespace of its own (their ports
			// are fixed), all open before one Start (a start verifies
			// the programs, seconds in an emulated guest).
			name := fmt.Sprintf("%s/%s", tt.name, lo)
			ns := testnet.NewNetns(t)
			ns.SetPortRange(t, portLow, portHigh)
			c := openCase{name: name, gone: tt.gone, client: tt.client, server: tt.server}
			var ln *net.TCPListener
			h.cg.Run(t, func() {
				require.NoError(t, ns.Do(func() (err error) {
					server := netip.AddrPortFrom(lo, tt.port)
					if ln, err = testnet.ListenBacklog(server, tt.backlog, false); err != nil {
						return err
					}
					if tt.from == fromRange {
						c.clientConn, err = testnet.Dial(server)
					} else {
						c.clientConn, err = testnet.DialFrom(netip.AddrPortFrom(lo, uint16(tt.from)), server)
					}
					return err
				}), name)
			})
			t.Cleanup(func() { ln.Close() })
			t.Cleanup(func() { c.clientConn.Close() })
			var err error
			c.serverConn, err = ln.AcceptTCP()
			require.NoError(t, err, name)
			t.Cleanup(func() { c.serverConn.Close() })
			if !tt.keep {
				require.NoError(t, ln.Close(), name)
			}
			c.clientCookie, c.serverCookie = cookieOf(t, c.clientConn), cookieOf(t, c.serverConn)
			if tt.from == bindZero {
				port := testnet.AddrPort(c.clientConn.LocalAddr()).Port()
				require.True(t, port >= portLow && port <= portHigh, "%s: bind() chose %d", name, port)
			}
			switch tt.gone {
			case "client":
				require.NoError(t, c.clientConn.Close())
				require.NoError(t, readEnd(t, c.serverConn), name) // its FIN is in
			case "server":
				require.NoError(t, c.serverConn.Close())
				require.NoError(t, readEnd(t, c.clientConn), name)
			}
			cases = append(cases, c)
		}
	}

	// The rules, from a scan of the test's own.
	table, err := sockscan.Scan(os.Getpid())
	require.NoError(t, err)
	for _, c := range cases {
		for _, s := range c.sides() {
			got, ok := table.Take(s.cookie, netip.AddrPort{}, netip.AddrPort{})
			assert.Equal(t, c.gone != s.name, ok, "%s: %s in the scan", c.name, s.name)
			assert.Equal(t, s.want.rule, got.Rule, "%s: %s: rule", c.name, s.name)
		}
	}

	h.start()
	for _, c := range cases {
		switch c.gone {
		case "client":
			require.NoError(t, c.serverConn.Close())
		case "server":
			require.NoError(t, c.clientConn.Close())
		default:
			require.NoError(t, c.clientConn.Close())
			require.NoError(t, readEnd(t, c.serverConn), c.name)
			require.NoError(t, c.serverConn.Close())
		}
	}
	h.stop()
	got := h.attrsByCookie()
	self, err := os.Executable()
	require.NoError(t, err)
	records := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, s := range c.sides() {
				a := got[s.cookie]
				if s.name == c.gone {
					assert.Nil(t, a, s.name)
					continue
				}
				records++
				require.NotNil(t, a, "%s: no record", s.name)
				assert.Equal(t, s.want.dir, a[attrDirection.String()], s.name)
				assert.Equal(t, false, a[attrStartObserved.String()], s.name)
				assert.Equal(t, int64(os.Getpid()), a[attrProcessPID.String()], s.name)
				assert.Equal(t, filepath.Base(self), a[attrProcessExecutable.String()], s.name)
			}
		})
	}
	assert.Len(t, got, records, "no record but the cases' sockets'")
}

// openCase is one case of TestDirectionOfConnectionsOpenBeforeStart: a
// connection open (or half gone) before Start.
type openCase struct {
	name                       string
	gone                       string
	client, server             side
	clientConn, serverConn     *net.TCPConn
	clientCookie, serverCookie uint64
}

// caseSocket is one socket of an openCase and what is expected of it.
type caseSocket struct {
	name   string
	cookie uint64
	want   side
}

// sides are the case's two sockets.
func (c openCase) sides() []caseSocket {
	return []caseSocket{{"client", c.clientCookie, c.client}, {"server", c.serverCookie, c.server}}
}

// The collector's own connections that were open before Start are left out
// with exclude_self, as the kernel leaves out those it opens later: the scan
// names the collector as their owner.
func TestOwnConnectionsOpenBeforeStartAreExcluded(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(listen, func(t *testing.T) {
			h := newHarness(t)
			bin := helperBinary(t)
			srv := startHelper(t, bin, h.cg, nil, "serve-once", listen)
			addr := srv.Listening()
			own := h.cg.Dial(t, addr) // the collector's, e.g. an exporter's
			defer own.Close()
			srv.Socket()
			_, err := own.Write([]byte("hi"))
			require.NoError(t, err)
			ownCookie := cookieOf(t, own)
			time.Sleep(50 * time.Millisecond) // the handshake is over well before Start

			h.startWith(Config{
				RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond,
				Filters: FiltersConfig{ExcludeSelf: true},
			})
			srv.Say("wait-eof")
			srv.Expect("got")
			require.NoError(t, own.Close())
			srv.Expect("eof")
			srv.Close()
			h.stop()
			got := h.attrsByCookie()
			assert.NotContains(t, got, ownCookie, "the collector's own connection")
			require.Contains(t, got, srv.Cookie, "the other end, another process's")
			assert.Equal(t, "incoming", got[srv.Cookie][attrDirection.String()])
			assert.Equal(t, srv.PID(), got[srv.Cookie][attrProcessPID.String()])
			assert.Len(t, got, 1)
		})
	}
}

func cookieOf(t *testing.T, c *net.TCPConn) uint64 {
	t.Helper()
	ck, err := testnet.Cookie(c)
	require.NoError(t, err)
	return ck
}

// A kernel that cannot run the scan (no BPF iterators) costs one warning
// that names what is missing; Start succeeds, and the records of
// connections open before it have direction unknown and no process.
func TestStartWithoutTheScan(t *testing.T) {
	h := newHarness(t)
	core, logs := observer.New(zap.WarnLevel)
	h.logger = zap.New(core)
	c := dial(t, loopback4, h, true, true)
	h.options = func(o *options) {
		o.scan = func(int) (*sockscan.Table, error) {
			return &sockscan.Table{}, fmt.Errorf("scan sockets: load %s: %w", bpf.ScanFeature, bpf.ErrUnsupportedKernel)
		}
	}
	h.start()
	require.NoError(t, c.client.Close())
	require.NoError(t, readEnd(t, c.server))
	require.NoError(t, c.server.Close())
	assert.ElementsMatch(t, []record{
		c.clientRecord("unknown", "local", "fin", "ipv4"),
		c.serverRecord("unknown", "remote", "fin", "ipv4"),
	}, h.stop())
	for _, a := range h.attrsByCookie() {
		assert.NotContains(t, a, attrProcessPID.String())
	}

	// One warning for the scan (kernels before 6.12 add one for the owner
	// programs they lack).
	warnings := logs.FilterMessageSnippet("sockets open before start").All()
	require.Len(t, warnings, 1)
	fields := warnings[0].ContextMap()
	assert.Equal(t, "BPF task_file iterator", fields["missing"])
	assert.Contains(t, fields["error"], "kernel lacks a required BPF feature")
}
