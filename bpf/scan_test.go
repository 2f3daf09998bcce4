//go:build linux

package bpf

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// scanned returns the sockets of a scan by cookie (those with one).
func scanned(t *testing.T, candidates []ScanFeatures) map[uint64]ScanSocket {
	t.Helper()
	socks, _, err := scanSockets(candidates)
	require.NoError(t, err)
	out := map[uint64]ScanSocket{}
	for _, s := range socks {
		if s.Cookie != 0 {
			out[s.Cookie] = s
		}
	}
	return out
}

// The evidence the scan reads, socket by socket, as the kernel keeps it: in
// a network namespace of the test's with an ephemeral port range of its
// own, over IPv4 and IPv6.
func TestScanSocketsEvidence(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testnet.NewNetns(t)
	ns.SetPortRange(t, 20000, 29999)
	self, err := os.Executable()
	require.NoError(t, err)

	for _, lo := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		t.Run(lo.String(), func(t *testing.T) {
			var listenerClosed, listenerOpen *net.TCPListener
			var client, clientBound *net.TCPConn
			require.NoError(t, ns.Do(func() (err error) {
				// listen(16), then closed after the accept.
				if listenerClosed, err = testnet.ListenBacklog(netip.AddrPortFrom(lo, 8080), 16, false); err != nil {
					return err
				}
				if client, err = testnet.Dial(netip.AddrPortFrom(lo, 8080)); err != nil {
					return err
				}
				// listen(0), open; a client that bound its port.
				if listenerOpen, err = testnet.ListenBacklog(netip.AddrPortFrom(lo, 8081), 0, true); err != nil {
					return err
				}
				clientBound, err = testnet.DialFrom(netip.AddrPortFrom(lo, 2000), netip.AddrPortFrom(lo, 8081))
				return err
			}))
			defer listenerOpen.Close()
			defer client.Close()
			defer clientBound.Close()
			accepted, err := listenerClosed.AcceptTCP()
			require.NoError(t, err)
			defer accepted.Close()
			require.NoError(t, listenerClosed.Close())
			acceptedZero, err := listenerOpen.AcceptTCP()
			require.NoError(t, err)
			defer acceptedZero.Close()

			// Cookies asked for before the scan: a kernel without the
			// cookie helper in iterators (before 5.12) reads the ones
			// sockets have.
			var cookies []uint64
			for _, c := range []*net.TCPConn{client, accepted, clientBound, acceptedZero} {
				ck, err := testnet.Cookie(c)
				require.NoError(t, err)
				cookies = append(cookies, ck)
			}
			lck, err := testnet.Cookie(listenerOpen)
			require.NoError(t, err)
			got := scanned(t, scanCandidates)
			own := ScanSocket{
				Netns: ns.Inode(), PID: uint32(os.Getpid()), Executable: filepath.Base(self),
				State: 1, EphemeralPorts: PortRange{20000, 29999},
			}
			for i, c := range []struct {
				name    string
				conn    *net.TCPConn
				backlog uint32
				bucket  BindBucket
			}{
				{"client", client, 0, BindByConnect},
				{"accepted from listen(16), listener closed", accepted, 16, BindByBind},
				{"client with a bound port", clientBound, 0, BindByBind},
				{"accepted from listen(0)", acceptedZero, 0, BindByBind},
			} {
				ck := cookies[i]
				want := own
				want.Cookie, want.Backlog, want.BindBucket = ck, c.backlog, c.bucket
				want.Local, want.Remote = testnet.AddrPort(c.conn.LocalAddr()), testnet.AddrPort(c.conn.RemoteAddr())
				if lo.Is6() {
					want.IPv6Only = v6only(t, c.conn)
				}
				s := got[ck]
				s.Inode = 0
				assert.Equal(t, want, s, c.name)
			}

			l := got[lck]
			assert.Equal(t, uint8(StateListen), l.State)
			assert.Equal(t, netip.AddrPortFrom(lo, 8081), l.Local)
			assert.Equal(t, lo.Is6(), l.IPv6Only, "IPV6_V6ONLY")
		})
	}
}

// The cookie the scan gives a socket is the one the kernel gives it for
// good: the cgroup programs, which ask later, get the same.
func TestScanSocketsGivesCookies(t *testing.T) {
	testenv.RequireRoot(t)
	client, _ := testnet.Pair(t)

	socks, feat, err := ScanSockets()
	require.NoError(t, err)
	if !feat.CookieHelper {
		// Before Linux 5.12: TestScanSocketsWithoutCookieHelper is what
		// this kernel gives.
		t.Logf("this kernel refuses bpf_get_socket_cookie in iterators: %+v", feat)
		return
	}
	ck, err := testnet.Cookie(client) // asked after the scan
	require.NoError(t, err)
	var found bool
	for _, s := range socks {
		if s.Local == testnet.AddrPort(client.LocalAddr()) && s.Remote == testnet.AddrPort(client.RemoteAddr()) {
			assert.Equal(t, ck, s.Cookie)
			found = true
		}
	}
	assert.True(t, found)
}

// Without the cookie helper (kernels before 5.12), the scan reads the
// cookie a socket has, 0 if nobody ever asked for it.
func TestScanSocketsWithoutCookieHelper(t *testing.T) {
	testenv.RequireRoot(t)
	ln, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	require.NoError(t, err)
	defer ln.Close()
	asked, err := testnet.Dial(testnet.AddrPort(ln.Addr()))
	require.NoError(t, err)
	defer asked.Close()
	ck, err := testnet.Cookie(asked)
	require.NoError(t, err)
	fresh, err := testnet.Dial(testnet.AddrPort(ln.Addr()))
	require.NoError(t, err)
	defer fresh.Close()

	socks, feat, err := scanSockets(scanCandidates[1:])
	require.NoError(t, err)
	assert.False(t, feat.CookieHelper)
	cookies := map[netip.AddrPort]uint64{}
	for _, s := range socks {
		cookies[s.Local] = s.Cookie
	}
	assert.Equal(t, ck, cookies[testnet.AddrPort(asked.LocalAddr())])
	// Nobody here asked for the fresh socket's cookie; another program on
	// the host may have (a collector's scan at start, with the helper,
	// gives every socket one), and then the scan reads that cookie.
	got := cookies[testnet.AddrPort(fresh.LocalAddr())]
	if got != 0 {
		now, err := testnet.Cookie(fresh)
		require.NoError(t, err)
		assert.Equal(t, now, got, "a cookie that another program gave the socket, or 0")
	}
}

// Without bpf_sock_from_file (kernels before 5.11), the scan tells sockets by
// their inode's mode, and finds the same ones.
func TestScanSocketsWithoutSockFromFile(t *testing.T) {
	testenv.RequireRoot(t)
	ln, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	require.NoError(t, err)
	defer ln.Close()
	client, err := testnet.Dial(testnet.AddrPort(ln.Addr()))
	require.NoError(t, err)
	defer client.Close()
	server, err := ln.AcceptTCP()
	require.NoError(t, err)
	defer server.Close()

	mine := func(socks []ScanSocket) []ScanSocket {
		var out []ScanSocket
		for _, s := range socks {
			if s.PID == uint32(os.Getpid()) {
				s.Cookie = 0 // the first scan may give cookies
				out = append(out, s)
			}
		}
		return out
	}
	without, feat, err := scanSockets(scanCandidates[2:])
	require.NoError(t, err)
	assert.Equal(t, ScanFeatures{}, feat)
	with, _, err := ScanSockets()
	require.NoError(t, err)
	assert.Len(t, mine(without), 3, "the listener and both ends")
	assert.ElementsMatch(t, mine(with), mine(without))
}

// The ephemeral port range is the socket's own namespace's, in the layout
// of the running kernel (one u32 since Linux 6.3).
func TestScanSocketsPortRange(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testnet.NewNetns(t)
	ns.SetPortRange(t, 41000, 41999)
	for _, n := range []*testnet.Netns{nil, ns} {
		var l *net.TCPListener
		require.NoError(t, doIn(n, func() (err error) {
			l, err = testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
			return err
		}))
		ck, err := testnet.Cookie(l)
		require.NoError(t, err)
		low, high := testnet.PortRange(t, n)
		assert.Equal(t, PortRange{low, high}, scanned(t, scanCandidates)[ck].EphemeralPorts)
		require.NoError(t, l.Close())
	}
	low, high := testnet.PortRange(t, ns)
	assert.Equal(t, PortRange{41000, 41999}, PortRange{low, high})
}

// An MPTCP socket (Go's listeners default to it) is found through its first
// subflow, the TCP socket that carries the connection; a plain TCP client's
// connection to an MPTCP listener is accepted as a plain TCP socket. On a
// kernel without MPTCP, Go makes plain TCP sockets.
func TestScanSocketsMPTCP(t *testing.T) {
	testenv.RequireRoot(t)
	mptcp := haveMPTCP()
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(true)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	for _, mptcpClient := range []bool{false, true} {
		d := net.Dialer{}
		d.SetMultipathTCP(mptcpClient)
		client, err := d.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer client.Close()
		server, err := ln.Accept()
		require.NoError(t, err)
		defer server.Close()

		socks, _, err := ScanSockets()
		require.NoError(t, err)
		type ends struct{ local, remote netip.AddrPort }
		found := map[ends]ScanSocket{}
		for _, s := range socks {
			if s.PID == uint32(os.Getpid()) {
				found[ends{s.Local, s.Remote}] = s
			}
		}
		cl, sv := testnet.AddrPort(client.LocalAddr()), testnet.AddrPort(server.LocalAddr())
		listener := found[ends{sv, netip.AddrPortFrom(netip.IPv4Unspecified(), 0)}]
		assert.Equal(t, uint8(StateListen), listener.State)
		assert.Equal(t, mptcp, listener.MPTCPSubflow, "the MPTCP listener's TCP subflow")
		assert.NotZero(t, listener.Backlog)

		c := found[ends{cl, sv}]
		assert.Equal(t, mptcp && mptcpClient, c.MPTCPSubflow, "client")
		assert.Equal(t, BindByConnect, c.BindBucket, "client")
		s := found[ends{sv, cl}]
		assert.Equal(t, mptcp && mptcpClient, s.MPTCPSubflow, "accepted")
		assert.Equal(t, listener.Backlog, s.Backlog, "accepted: copied from the listener's subflow")
		assert.Equal(t, BindByBind, s.BindBucket, "accepted")
	}
}

// v6only returns the socket's IPV6_V6ONLY, as the kernel answers it.
func v6only(t *testing.T, c *net.TCPConn) bool {
	t.Helper()
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	var v int
	var serr error
	require.NoError(t, raw.Control(func(fd uintptr) {
		v, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
	}))
	require.NoError(t, serr)
	return v == 1
}

func doIn(ns *testnet.Netns, f func() error) error {
	if ns == nil {
		return f()
	}
	return ns.Do(f)
}
