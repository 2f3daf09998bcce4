//go:build linux

package receiver

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

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/netflowtcpend/netflowtcpend/internal/testnet"
)

// Some tests need sockets owned by another process than the test: the test
// binary runs again as a helper, under another name, in the monitored cgroup
// (and, if asked, in another network namespace), and talks over its
// standard input and output.

const helperEnv = "NETFLOWTCPEND_HELPER"

// helperName is the helper's executable name, as records should give it.
const helperName = "nfhelper"

// testWithout: kernel features and optional programs every receiver of the
// tests leaves out (bpf.Options.Without), from NETFLOWTCPEND_TEST_WITHOUT
// (comma-separated): NETFLOWTCPEND_TEST_WITHOUT=atomics runs the tests with
// the object built for kernels without atomic operations.
var testWithout []string

func TestMain(m *testing.M) {
	if w := os.Getenv("NETFLOWTCPEND_TEST_WITHOUT"); w != "" {
		testWithout = strings.Split(w, ",")
	}
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode, os.Args[len(os.Args)-1]); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// The read loop and everything Start begins must end with Shutdown.
	goleak.VerifyTestMain(m)
}

// runHelper serves or connects, says what its socket is, and waits for
// "close" on its standard input before closing.
func runHelper(mode, addr string) error {
	in := bufio.NewScanner(os.Stdin)
	var conn *net.TCPConn
	switch mode {
	case "serve", "serve-once", "serve-mptcp", "accept-inherited":
		var ln net.Listener
		var err error
		if mode == "accept-inherited" {
			// A pre-forked worker: the listener is its parent's (fd 3).
			ln, err = net.FileListener(os.NewFile(3, "listener"))
		} else {
			lc := net.ListenConfig{}
			lc.SetMultipathTCP(mode == "serve-mptcp")
			ln, err = lc.Listen(context.Background(), "tcp", addr)
		}
		if err != nil {
			return err
		}
		fmt.Println("listening", ln.Addr())
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		conn = c.(*net.TCPConn)
		if mode == "serve-once" {
			// A one-shot server (or one in a graceful restart): the
			// listener is gone, the accepted connection stays.
			if err := ln.Close(); err != nil {
				return err
			}
		}
	case "connect", "connect-mptcp":
		d := net.Dialer{}
		d.SetMultipathTCP(mode == "connect-mptcp")
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return err
		}
		conn = c.(*net.TCPConn)
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
	for in.Scan() {
		switch in.Text() {
		case "close":
			return conn.Close()
		case "wait-eof":
			// "got" once data came, then "eof".
			buf, said := make([]byte, 512), false
			for {
				n, err := conn.Read(buf)
				if n > 0 && !said {
					fmt.Println("got")
					said = true
				}
				if err != nil {
					break
				}
			}
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
	Cookie        uint64
	Local, Remote netip.AddrPort
	// From its "listening" line (servers).
	Listening netip.AddrPort
}

// helperBinary copies the test binary to a file named helperName.
func helperBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), helperName)
	data, err := os.ReadFile(self)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	return bin
}

// startHelper starts a helper in cgroup cg (nil: the test's cgroup) and
// network namespace ns (nil: the test's), handing it extra files from fd 3.
func startHelper(t *testing.T, bin string, cg *testnet.Cgroup, ns *testnet.Netns, mode, addr string, extra ...*os.File) *helper {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^$", addr)
	cmd.ExtraFiles = extra
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	if cg != nil {
		dir, err := os.Open(cg.Path)
		require.NoError(t, err)
		defer dir.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	if ns != nil {
		require.NoError(t, ns.Start(cmd))
	} else {
		require.NoError(t, cmd.Start())
	}
	h := &helper{t: t, cmd: cmd, stdin: stdin, stdout: bufio.NewScanner(stdout)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return h
}

// expect reads the helper's next line, which must start with word, and
// returns its fields after it.
func (h *helper) expect(word string) []string {
	h.t.Helper()
	require.True(h.t, h.stdout.Scan(), "helper ended: %v", h.stdout.Err())
	f := strings.Fields(h.stdout.Text())
	require.NotEmpty(h.t, f)
	require.Equal(h.t, word, f[0], "helper said %q", h.stdout.Text())
	return f[1:]
}

func (h *helper) listening() netip.AddrPort {
	h.t.Helper()
	h.Listening = netip.MustParseAddrPort(h.expect("listening")[0])
	return h.Listening
}

func (h *helper) socket() {
	h.t.Helper()
	f := h.expect("socket")
	cookie, err := strconv.ParseUint(f[0], 10, 64)
	require.NoError(h.t, err)
	h.Cookie = cookie
	h.Local = testnet.AddrPort(mustTCPAddr(f[1]))
	h.Remote = testnet.AddrPort(mustTCPAddr(f[2]))
}

func mustTCPAddr(s string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
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
