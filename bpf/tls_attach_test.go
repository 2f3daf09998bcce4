//go:build linux

package bpf

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testhello"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/internal/tlshello"
)

// Real crypto/tls clients and servers in a test cgroup: the pieces the
// programs copy, per socket, as they saw the segments, and the name they
// give.

// tlsEnv is the programs attached to a test cgroup.
type tlsEnv struct {
	cg   *testnet.Cgroup
	objs *Objects
	run  *testRun
}

func newTLSEnv(t *testing.T) *tlsEnv {
	t.Helper()
	testenv.RequireRoot(t)
	cg := testnet.NewCgroup(t)
	r := newTestRunWith(t, Options{RingBufferSize: 1 << 22, TLSHelloLimit: MaxTLSHello})
	requireTLS(t, r.objs)
	require.NoError(t, r.objs.Attach(cg.Path))
	return &tlsEnv{cg: cg, objs: r.objs, run: r}
}

// sides is what the programs copied, by socket cookie; listener pieces
// (TCP Fast Open) apart.
type sides struct {
	byCookie map[uint64][]TLSPiece
	listener []TLSPiece
}

func (e *tlsEnv) pieces(t *testing.T) sides {
	t.Helper()
	s := sides{byCookie: map[uint64][]TLSPiece{}}
	for _, raw := range drainRaw(t, e.run.rd) {
		if TypeOf(raw) != RecordTLS {
			continue
		}
		var p TLSPiece
		require.NoError(t, p.Decode(raw))
		p.Payload = slices.Clone(p.Payload)
		if p.Listener {
			s.listener = append(s.listener, p)
		} else {
			s.byCookie[p.Cookie] = append(s.byCookie[p.Cookie], p)
		}
	}
	return s
}

// name joins pieces as user space does.
func name(pieces ...TLSPiece) (string, bool) {
	if len(pieces) == 0 {
		return "", false
	}
	st := tlshello.NewStream(pieces[0].Limit)
	var n string
	var done bool
	for _, p := range pieces {
		n, done = st.Add(p.Offset, p.Payload)
	}
	return n, done
}

// tlsConn makes one TLS connection from a client (in clientNS; nil: this
// process's namespace) to a crypto/tls server listening on addr (in
// serverNS), both in the cgroup, with the client's ClientHello written in
// the given pieces; it returns the two sockets' cookies.
func (e *tlsEnv) tlsConn(t *testing.T, clientNS, serverNS *testnet.Netns, addr netip.AddrPort, serverName string,
	pieces int, cfg *tls.Config,
) (clientCookie, serverCookie uint64) {
	t.Helper()
	cert := testhello.NewCert(t, "server.example")
	var ln *net.TCPListener
	e.cg.Run(t, func() {
		require.NoError(t, inNetns(serverNS, func() (err error) { ln, err = testnet.Listen(addr); return err }))
	})
	defer ln.Close()
	served := make(chan uint64, 1)
	go testhello.Serve(ln, cert, func(c *net.TCPConn) {
		cookie, _ := testnet.Cookie(c)
		served <- cookie
	})
	var raw *net.TCPConn
	e.cg.Run(t, func() {
		require.NoError(t, inNetns(clientNS, func() (err error) { raw, err = testnet.Dial(testnet.AddrPort(ln.Addr())); return err }))
	})
	clientCookie, err := testnet.Cookie(raw)
	require.NoError(t, err)
	ccfg := cfg.Clone()
	ccfg.ServerName, ccfg.InsecureSkipVerify = serverName, true
	c := tls.Client(&testhello.SplitConn{TCPConn: raw, Pieces: pieces}, ccfg)
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	require.NoError(t, c.Handshake())
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 4))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	serverCookie = <-served
	require.NotZero(t, serverCookie)
	time.Sleep(20 * time.Millisecond)
	return clientCookie, serverCookie
}

func inNetns(ns *testnet.Netns, f func() error) error {
	if ns == nil {
		return f()
	}
	return ns.Do(f)
}

// The ClientHello of a real client reaches both sockets' pieces whole, in
// one segment or in the two or three a client that writes it in parts, or
// a small MTU, makes: the programs see each segment (the pieces say so)
// and the pieces give the name.
func TestTLSPiecesOfRealConnections(t *testing.T) {
	e := newTLSEnv(t)
	// Segments of at most the MTU (testnet.NewSmallSegmentVethPair). IPv6
	// needs an MTU of 1280 at least.
	a, b := testnet.NewSmallSegmentVethPair(t, 600)
	a6, b6 := testnet.NewSmallSegmentVethPair(t, 1280)
	pq := &tls.Config{CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}, MinVersion: tls.VersionTLS13}
	tests := []struct {
		name      string
		client    *testnet.Netns
		server    *testnet.Netns
		addr      netip.AddrPort
		pieces    int
		cfg       *tls.Config
		minPieces int // each socket's, at least
	}{
		{"loopback4, TLS 1.3", nil, nil, netip.MustParseAddrPort("127.0.0.1:0"), 1, &tls.Config{MinVersion: tls.VersionTLS13}, 1},
		{"loopback6, TLS 1.2", nil, nil, netip.MustParseAddrPort("[::1]:0"), 1, &tls.Config{MaxVersion: tls.VersionTLS12}, 1},
		{"loopback4, written in three parts", nil, nil, netip.MustParseAddrPort("127.0.0.1:0"), 3, pq, 3},
		{"loopback6, written in two parts", nil, nil, netip.MustParseAddrPort("[::1]:0"), 2, pq, 2},
		{"veth4, MTU 600", a, b, netip.AddrPortFrom(b.Addr4, 0), 1, pq, 3},
		{"veth6, MTU 1280", a6, b6, netip.AddrPortFrom(b6.Addr6, 0), 1, pq, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := e.tlsConn(t, tt.client, tt.server, tt.addr, "www.example.com", tt.pieces, tt.cfg)
			got := e.pieces(t)
			for _, side := range []struct {
				name   string
				cookie uint64
				egress bool
				ns     *testnet.Netns
			}{{"client", client, true, tt.client}, {"server", server, false, tt.server}} {
				ps := got.byCookie[side.cookie]
				t.Logf("%s: pieces (offset, bytes) %v", side.name, offsets(ps))
				require.GreaterOrEqual(t, len(ps), tt.minPieces, "%s: pieces %v", side.name, offsets(ps))
				netns := testnet.HostInode()
				if side.ns != nil {
					netns = side.ns.Inode()
				}
				for _, p := range ps {
					assert.Equal(t, side.egress, p.Egress, side.name)
					assert.Equal(t, netns, p.Netns, side.name)
				}
				n, done := name(ps...)
				assert.True(t, done, side.name)
				assert.Equal(t, "www.example.com", n, side.name)
			}
			assert.Len(t, got.byCookie, 2, "no other socket's pieces")
		})
	}
}

func offsets(ps []TLSPiece) [][2]int {
	var out [][2]int
	for _, p := range ps {
		out = append(out, [2]int{p.Offset, len(p.Payload)})
	}
	return out
}

// TCP Fast Open: the second connection to a server carries the ClientHello
// in its SYN. The listener's copy names the connection by its addresses;
// the client's copy is its own.
func TestTLSPiecesWithFastOpen(t *testing.T) {
	e := newTLSEnv(t)
	ns := testnet.NewNetns(t)
	require.NoError(t, ns.EnableFastOpen())
	cert := testhello.NewCert(t, "tfo.example")
	var ln net.Listener
	e.cg.Run(t, func() {
		require.NoError(t, ns.Do(func() (err error) {
			ln, err = testnet.FastOpenListenConfig().Listen(t.Context(), "tcp4", "127.0.0.1:0")
			return err
		}))
	})
	defer ln.Close()
	go testhello.Serve(ln, cert, nil)
	dial := func() (uint64, netip.AddrPort) {
		var conn net.Conn
		e.cg.Run(t, func() {
			require.NoError(t, ns.Do(func() (err error) {
				conn, err = testnet.FastOpenDialer().Dial("tcp4", ln.Addr().String())
				return err
			}))
		})
		cookie, err := testnet.Cookie(conn.(*net.TCPConn))
		require.NoError(t, err)
		c := tls.Client(conn, &tls.Config{ServerName: "tfo.example", InsecureSkipVerify: true})
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		require.NoError(t, c.Handshake())
		local := testnet.AddrPort(conn.LocalAddr())
		require.NoError(t, c.Close())
		time.Sleep(20 * time.Millisecond)
		return cookie, local
	}
	dial() // the first connection fetches the Fast Open cookie
	_ = e.pieces(t)
	cookie, local := dial()
	got := e.pieces(t)
	n, done := name(got.byCookie[cookie]...)
	assert.True(t, done)
	assert.Equal(t, "tfo.example", n, "the client's copy")
	require.Len(t, got.listener, 1, "the SYN's data, at the listener")
	l := got.listener[0]
	assert.Equal(t, local, l.Source)
	assert.Equal(t, ns.Inode(), l.Netns)
	assert.Zero(t, l.Offset)
	n, done = name(got.listener...)
	assert.True(t, done)
	assert.Equal(t, "tfo.example", n, "the listener's copy")
}
