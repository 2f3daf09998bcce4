//go:build linux

package testnet

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// EnableFastOpen turns TCP Fast Open on for clients and servers in the
// namespace (net.ipv4.tcp_fastopen = 3; per namespace, so the host's is
// untouched).
func (n *Netns) EnableFastOpen() error {
	return n.Do(func() error {
		// /proc/sys/net shows the namespace of the task that opens it.
		return os.WriteFile("/proc/sys/net/ipv4/tcp_fastopen", []byte("3"), 0o644)
	})
}

// FastOpenListenConfig listens with a Fast Open queue, over plain TCP.
func FastOpenListenConfig() *net.ListenConfig {
	lc := &net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_FASTOPEN, 16)
	}}
	lc.SetMultipathTCP(false)
	return lc
}

// FastOpenDialer connects with TCP_FASTOPEN_CONNECT: the connect returns at
// once and the first write goes out with the SYN, once the client holds the
// server's Fast Open cookie (from an earlier connection).
func FastOpenDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1)
	}}
}

// SetsockoptInt sets an integer socket option on c.
func SetsockoptInt(c syscall.RawConn, level, opt, value int) error {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, value) }); err != nil {
		return err
	}
	return serr
}
