//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testnet"
)

// Helper processes own the sockets of the sandbox test: the test binary,
// run again under another name (helperClient, helperServer) in a cgroup
// and network namespace of the test's choice, talking over its standard
// input and output.

const helperEnv = "NETFLOWTCPEND_E2E_HELPER"

// The helpers' executable names, as records give them.
const (
	helperClient = "nfclient"
	helperServer = "nfserver"
)

// runHelper runs one helper:
//
//	serve ADDR                 listen, accept one connection, read what the
//	                           client sends first
//	connect ADDR               connect and send a little (two bytes)
//	resolve SERVER NAME PORT   ask the DNS server at SERVER for NAME's IPv4
//	                           address, over UDP, and connect to it on PORT
//
// It says "listening ADDR" (serve), "resolved ADDR" (resolve), then
// "socket COOKIE LOCAL REMOTE" for its connected socket, and obeys its
// standard input: "wait-eof" reads until the peer closes, then says "eof";
// "close" closes the socket and exits. A server has read the client's
// bytes when it says "socket": for a connection made before the collector
// starts, that read is over before it starts too.
func runHelper(mode string, args []string) error {
	var conn *net.TCPConn
	switch mode {
	case "serve":
		ln, err := testnet.Listen(netip.MustParseAddrPort(args[0]))
		if err != nil {
			return err
		}
		fmt.Println("listening", ln.Addr())
		if conn, err = ln.AcceptTCP(); err != nil {
			return err
		}
		defer ln.Close()
		if _, err := io.ReadFull(conn, make([]byte, 2)); err != nil {
			return err
		}
	case "connect", "resolve":
		addr := args[0]
		if mode == "resolve" {
			r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "udp", net.JoinHostPort(args[0], "53"))
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ips, err := r.LookupNetIP(ctx, "ip4", args[1])
			if err != nil {
				return err
			}
			fmt.Println("resolved", ips[0])
			addr = net.JoinHostPort(ips[0].String(), args[2])
		}
		var err error
		if conn, err = testnet.Dial(netip.MustParseAddrPort(addr)); err != nil {
			return err
		}
		if _, err := conn.Write([]byte("hi")); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown helper mode %q", mode)
	}
	cookie, err := testnet.Cookie(conn)
	if err != nil {
		return err
	}
	fmt.Println("socket", cookie, conn.LocalAddr(), conn.RemoteAddr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "close":
			return conn.Close()
		case "wait-eof":
			_, _ = io.Copy(io.Discard, conn)
			fmt.Println("eof")
		}
	}
	return conn.Close()
}

// helper is a running helper process.
type helper struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Scanner
	// From its "socket" line.
	cookie uint64
}

// helperBinaries copies the test binary into dir under both helper names
// (hard links: one file, two names) and returns dir.
func helperBinaries(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	copyExecutable(t, self, filepath.Join(dir, helperClient))
	require.NoError(t, os.Link(filepath.Join(dir, helperClient), filepath.Join(dir, helperServer)))
	return dir
}

// copyExecutable copies a file, mode 0755.
func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
}

// startHelper starts the helper named name from dir, as root, in cgroup cg
// and network namespace ns (nil: the test's).
func startHelper(t *testing.T, dir, name string, cg *testnet.Cgroup, ns *testnet.Netns, mode string, args ...string) *helper {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, name), append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	cgroup, err := os.Open(cg.Path)
	require.NoError(t, err)
	defer cgroup.Close()
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgroup.Fd())}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	if ns != nil {
		require.NoError(t, ns.Start(cmd))
	} else {
		require.NoError(t, cmd.Start())
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return &helper{t: t, cmd: cmd, stdin: stdin, stdout: bufio.NewScanner(stdout)}
}

// expect reads the helper's next line, which must start with word, and
// returns the fields after it.
func (h *helper) expect(word string) []string {
	h.t.Helper()
	require.True(h.t, h.stdout.Scan(), "helper ended: %v", h.stdout.Err())
	f := strings.Fields(h.stdout.Text())
	require.NotEmpty(h.t, f)
	require.Equal(h.t, word, f[0], "helper said %q", h.stdout.Text())
	return f[1:]
}

// socket reads the helper's "socket" line.
func (h *helper) socket() {
	h.t.Helper()
	cookie, err := strconv.ParseUint(h.expect("socket")[0], 10, 64)
	require.NoError(h.t, err)
	h.cookie = cookie
}

func (h *helper) say(line string) {
	h.t.Helper()
	_, err := io.WriteString(h.stdin, line+"\n")
	require.NoError(h.t, err)
}

// close closes the helper's socket and waits for it to exit.
func (h *helper) close() {
	h.t.Helper()
	h.say("close")
	require.NoError(h.t, h.cmd.Wait())
}

func (h *helper) pid() int64 { return int64(h.cmd.Process.Pid) }

// exchange ends a connection between a server and a client helper: the
// client closes, the server reads to the end and closes.
func exchange(srv, cli *helper) {
	srv.say("wait-eof")
	cli.close()
	srv.expect("eof")
	srv.close()
}
