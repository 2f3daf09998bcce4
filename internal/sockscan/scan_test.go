//go:build linux

package sockscan

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// closedListenerConn makes a connection in ns whose listener is closed
// after the accept (a graceful restart, a one-shot server): the evidence
// left is the accepted socket's copied backlog and the client's bind
// bucket.
func closedListenerConn(t *testing.T, ns *testnet.Netns, lo netip.Addr) (client, server *net.TCPConn) {
	t.Helper()
	var ln *net.TCPListener
	require.NoError(t, ns.Do(func() (err error) {
		if ln, err = testnet.Listen(netip.AddrPortFrom(lo, 0)); err != nil {
			return err
		}
		client, err = testnet.Dial(testnet.AddrPort(ln.Addr()))
		return err
	}))
	server, err := ln.AcceptTCP()
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func cookieOf(t *testing.T, c *net.TCPConn) uint64 {
	t.Helper()
	ck, err := testnet.Cookie(c)
	require.NoError(t, err)
	return ck
}

func TestScanFindsThisProcessSockets(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testnet.NewNetns(t)
	self, err := os.Executable()
	require.NoError(t, err)
	for _, lo := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		client, server := closedListenerConn(t, ns, lo)
		table, err := Scan(os.Getpid())
		require.NoError(t, err)
		for _, c := range []struct {
			conn *net.TCPConn
			want Socket
		}{
			{client, Socket{Outgoing, RuleConnect, os.Getpid(), filepath.Base(self)}},
			{server, Socket{Incoming, RuleBacklog, os.Getpid(), filepath.Base(self)}},
		} {
			// As the receiver takes them: by cookie, or by addresses
			// where the scan has none (kernels before 5.12).
			got, ok := table.Take(cookieOf(t, c.conn), testnet.AddrPort(c.conn.LocalAddr()), testnet.AddrPort(c.conn.RemoteAddr()))
			assert.True(t, ok)
			assert.Equal(t, c.want, got, "%s", lo)
		}
	}
}

// The scan needs no more than loading a tracing program: as user nobody with
// only CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (no CAP_SYS_ADMIN for setns,
// no CAP_SYS_PTRACE for other users' /proc/PID/fd) it finds root's sockets
// in another network namespace, with their direction and process.
func TestScanWithLeastPrivilege(t *testing.T) {
	testenv.RequireRoot(t) // needs root to become nobody
	ns := testnet.NewNetns(t)
	client, server := closedListenerConn(t, ns, netip.MustParseAddr("127.0.0.1"))
	client6, server6 := closedListenerConn(t, ns, netip.IPv6Loopback())
	var cookies []string
	for _, c := range []*net.TCPConn{client, server, client6, server6} {
		cookies = append(cookies, fmt.Sprint(cookieOf(t, c)))
	}

	// The go test build directory is private to root: copy the binary.
	self, err := os.Executable()
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "netflowtcpend-least-privilege")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "sockscan.test")
	copyFile(t, self, bin)

	cmd := exec.Command(bin, "-test.run=^$", strings.Join(cookies, ","))
	cmd.Env = append(os.Environ(), scanChildEnv+"=1")
	caps := []uintptr{unix.CAP_BPF, unix.CAP_NET_ADMIN, unix.CAP_PERFMON}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}},
		AmbientCaps: caps,
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	lines := map[string]string{}
	s := bufio.NewScanner(strings.NewReader(string(out)))
	for s.Scan() {
		line := s.Text()
		if rest, ok := strings.CutPrefix(line, "socket "); ok {
			t.Logf("as nobody: %s", line)
			cookie, v, _ := strings.Cut(rest, " ")
			lines["socket "+cookie] = v
			continue
		}
		sep := ":" // /proc/self/status
		if strings.HasPrefix(line, "proc-fd ") {
			sep = " "
		}
		k, v, _ := strings.Cut(line, sep)
		lines[k] = strings.TrimSpace(v)
		if k == "Uid" || strings.HasPrefix(k, "Cap") || k == "proc-fd" {
			t.Logf("as nobody: %s", line)
		}
	}
	assert.Equal(t, "65534\t65534\t65534\t65534", lines["Uid"])
	var want uint64
	for _, c := range caps {
		want |= 1 << c
	}
	assert.Equal(t, fmt.Sprintf("%016x", want), lines["CapEff"], "CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON only")
	assert.Contains(t, lines["proc-fd"], "permission denied", "root's /proc/PID/fd is closed to this process")

	exe := filepath.Base(self)
	pid := os.Getpid()
	for i, want := range []string{
		fmt.Sprintf("true outgoing connect %d %s", pid, exe),
		fmt.Sprintf("true incoming backlog %d %s", pid, exe),
		fmt.Sprintf("true outgoing connect %d %s", pid, exe),
		fmt.Sprintf("true incoming backlog %d %s", pid, exe),
	} {
		assert.Equal(t, want, lines["socket "+cookies[i]], "socket %d", i)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
}
