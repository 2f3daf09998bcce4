//go:build linux

package testnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Plain TCP: Go listens with MPTCP by default, and the TCP socket the kernel
// programs see for an MPTCP listener is a kernel-made subflow whose cookie
// is not the one SO_COOKIE reports.
var (
	listenConfig = func() *net.ListenConfig {
		lc := &net.ListenConfig{}
		lc.SetMultipathTCP(false)
		return lc
	}()
	dialer = func() *net.Dialer {
		d := &net.Dialer{Timeout: 5 * time.Second}
		d.SetMultipathTCP(false)
		return d
	}()
)

// Listen listens on addr ("127.0.0.1:0", "[::1]:0", ...) with plain TCP.
func Listen(addr netip.AddrPort) (*net.TCPListener, error) {
	l, err := listenConfig.Listen(context.Background(), "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return l.(*net.TCPListener), nil
}

// Dial connects to addr with plain TCP.
func Dial(addr netip.AddrPort) (*net.TCPConn, error) {
	c, err := dialer.Dial("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// Cookie returns the socket cookie, which the kernel programs put in every
// record.
func Cookie(c syscall.Conn) (uint64, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cookie uint64
	var serr error
	err = raw.Control(func(fd uintptr) {
		cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	})
	if err != nil {
		return 0, err
	}
	return cookie, serr
}

// TCPInfo returns the kernel's TCP_INFO of c's socket: its state and
// counters, as the records carry them.
func TCPInfo(c syscall.Conn) (*unix.TCPInfo, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var info *unix.TCPInfo
	var serr error
	err = raw.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err != nil {
		return nil, err
	}
	return info, serr
}

// AddrPort returns a net.Addr as a netip.AddrPort, with IPv4-mapped IPv6
// addresses unmapped as they are on the wire.
func AddrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// ListenBacklog listens on addr with plain TCP and listen(fd, backlog) (Go
// uses the system's maximum): the kernel copies the backlog into every
// socket accepted from the listener. v6only sets IPV6_V6ONLY on an IPv6
// listener.
func ListenBacklog(addr netip.AddrPort, backlog int, v6only bool) (*net.TCPListener, error) {
	family, sa := sockaddr(addr)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close() // FileListener holds a duplicate
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, err
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, boolInt(v6only)); err != nil {
			return nil, err
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("bind %s: %w", addr, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return nil, err
	}
	l, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	return l.(*net.TCPListener), nil
}

// DialFrom connects to addr from local with plain TCP: bind() then
// connect(). With port 0, bind() chooses the port.
func DialFrom(local, addr netip.AddrPort) (*net.TCPConn, error) {
	d := *dialer
	d.LocalAddr = net.TCPAddrFromAddrPort(local)
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func sockaddr(a netip.AddrPort) (int, unix.Sockaddr) {
	if a.Addr().Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Addr: a.Addr().As4(), Port: int(a.Port())}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Addr: a.Addr().As16(), Port: int(a.Port())}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Pair makes a loopback connection over 127.0.0.1: the connecting socket
// (client) and the one its listener accepted (server). The listener is
// closed; both sockets are closed at the end of the test if still open.
func Pair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	l, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	require.NoError(t, err)
	defer l.Close()
	client, err = Dial(AddrPort(l.Addr()))
	require.NoError(t, err)
	server, err = l.AcceptTCP()
	require.NoError(t, err)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}
