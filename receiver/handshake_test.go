//go:build linux

package receiver

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// A server socket reset before its handshake is over (still in SYN_RECV)
// ends with the RST it sends, one record on each side. The state
// tracepoint leaves such ends to the egress program, so that a socket the
// kernel makes and destroys in SYN_RECV without a segment (the loser of a
// handshake taken on two CPUs at once) is no record; this checks that the
// real ones are still there. The socket stays in SYN_RECV because the
// client's last ACK of the handshake is dropped, and the server has it
// before that ACK because the connection is a Fast Open one.
func TestResetBeforeTheHandshakeIsOver(t *testing.T) {
	testnet.RequireIptables(t)
	h := newHarness(t)
	h.start()
	ns := testnet.NewNetns(t)
	require.NoError(t, ns.EnableFastOpen())
	var ln *net.TCPListener
	h.cg.Run(t, func() {
		require.NoError(t, ns.Do(func() error {
			l, err := testnet.FastOpenListenConfig().Listen(t.Context(), "tcp4", "127.0.0.1:0")
			if err == nil {
				ln = l.(*net.TCPListener)
			}
			return err
		}))
	})
	t.Cleanup(func() { ln.Close() })
	port := testnet.AddrPort(ln.Addr()).Port()

	dial := func() (client, server *net.TCPConn) {
		h.cg.Run(t, func() {
			require.NoError(t, ns.Do(func() error {
				c, err := testnet.FastOpenDialer().Dial("tcp4", ln.Addr().String())
				if err == nil {
					client = c.(*net.TCPConn)
				}
				return err
			}))
		})
		// With TCP_FASTOPEN_CONNECT the SYN leaves with the first write.
		_, err := client.Write([]byte("ping"))
		require.NoError(t, err)
		require.NoError(t, ln.SetDeadline(time.Now().Add(5*time.Second)))
		server, err = ln.AcceptTCP()
		require.NoError(t, err)
		return client, server
	}

	// The first connection fetches the Fast Open cookie and ends as usual.
	client, server := dial()
	require.NoError(t, server.Close())
	require.NoError(t, client.Close())

	// From now on the client's pure ACKs to the server are dropped: the
	// handshake's last one too.
	ns.Run(t, "iptables", "-A", "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", strconv.Itoa(int(port)),
		"--tcp-flags", "ALL", "ACK", "-j", "DROP")
	client, server = dial()
	info, err := testnet.TCPInfo(server)
	require.NoError(t, err)
	require.Equal(t, uint8(unix.BPF_TCP_SYN_RECV), info.State, "the accepted socket is before its handshake's end")
	clientCookie, err := testnet.Cookie(client)
	require.NoError(t, err)
	serverCookie, err := testnet.Cookie(server)
	require.NoError(t, err)
	require.NoError(t, server.SetLinger(0))
	require.NoError(t, server.Close()) // unread "ping", and linger 0: a RST
	require.NoError(t, client.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = client.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ECONNRESET)
	require.NoError(t, client.Close())

	serverAddr := testnet.AddrPort(ln.Addr())
	clientAddr := testnet.AddrPort(client.LocalAddr())
	var got []record
	for _, r := range h.stop() {
		if r.Cookie == clientCookie || r.Cookie == serverCookie {
			got = append(got, r)
		}
	}
	netns := inode(ns)
	assert.ElementsMatch(t, []record{
		{Cookie: serverCookie, Direction: "incoming", Source: serverAddr.String(), Dest: clientAddr.String(),
			Local: serverAddr.String(), Peer: clientAddr.String(), EndBy: "local", Reason: "rst", NetType: "ipv4", Netns: netns},
		{Cookie: clientCookie, Direction: "outgoing", Source: serverAddr.String(), Dest: clientAddr.String(),
			Local: clientAddr.String(), Peer: serverAddr.String(), EndBy: "remote", Reason: "rst", NetType: "ipv4", Netns: netns},
	}, got)
}
