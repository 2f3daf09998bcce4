//go:build linux

package sockscan

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/netflowtcpend/netflowtcpend/internal/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testnet"
)

func sock(state uint8, local string, inode uint32, cookie uint32) *netlink.Socket {
	ap := netip.MustParseAddrPort(local)
	s := &netlink.Socket{State: state, INode: inode}
	s.ID.Source = ap.Addr().AsSlice()
	s.ID.SourcePort = ap.Port()
	s.ID.Cookie = [2]uint32{cookie, 0}
	return s
}

func TestClassify(t *testing.T) {
	const established = 1
	socks := []*netlink.Socket{
		sock(stateListen, "10.0.0.1:80", 1, 1),
		sock(stateListen, "[::]:443", 2, 2),
		sock(stateListen, "0.0.0.0:22", 3, 3),
		sock(established, "10.0.0.1:80", 10, 10),           // accepted on a specific address
		sock(established, "10.0.0.2:80", 11, 11),           // same port, other address: not that listener's
		sock(established, "[::ffff:10.0.0.1]:443", 12, 12), // IPv4 on a dual-stack listener
		sock(established, "[2001:db8::1]:443", 13, 13),     // IPv6 on it
		sock(established, "192.168.1.5:22", 14, 14),        // IPv4 wildcard
		sock(established, "10.0.0.1:51000", 15, 15),        // a client
		sock(established, "10.0.0.1:51001", 0, 16),         // a kernel socket (MPTCP subflow): no owner
	}
	owners := map[uint64]owner{10: {100, "nginx"}, 15: {200, "curl"}}
	out := map[uint64]Socket{}
	classify(socks, owners, out)
	assert.Equal(t, map[uint64]Socket{
		10: {Incoming, 100, "nginx"},
		11: {Outgoing, 0, ""},
		12: {Incoming, 0, ""},
		13: {Incoming, 0, ""},
		14: {Incoming, 0, ""},
		15: {Outgoing, 200, "curl"},
		16: {Outgoing, 0, ""},
	}, out, "listeners are not in the result")
}

func TestScanFindsThisProcessSockets(t *testing.T) {
	testenv.RequireRoot(t)
	cg := testnet.NewCgroup(t) // empty: only this process's own sockets
	ln, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	require.NoError(t, err)
	defer ln.Close()
	client, err := testnet.Dial(testnet.AddrPort(ln.Addr()))
	require.NoError(t, err)
	defer client.Close()
	server, err := ln.AcceptTCP()
	require.NoError(t, err)
	defer server.Close()

	got, err := Scan("/proc", cg.Path)
	require.NoError(t, err)
	self, _ := os.Executable()
	for _, c := range []struct {
		conn *net.TCPConn
		dir  Direction
	}{{client, Outgoing}, {server, Incoming}} {
		cookie, err := testnet.Cookie(c.conn)
		require.NoError(t, err)
		assert.Equal(t, Socket{c.dir, os.Getpid(), filepath.Base(self)}, got[cookie])
	}
}
