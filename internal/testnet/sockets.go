//go:build linux

package testnet

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"time"

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

// AddrPort returns a net.Addr as a netip.AddrPort, with IPv4-mapped IPv6
// addresses unmapped as they are on the wire.
func AddrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
