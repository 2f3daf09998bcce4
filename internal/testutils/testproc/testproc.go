//go:build linux

// Package testproc gives tests sockets owned by another process than the
// test: the test binary runs again as a helper, under a name of the test's
// choice (the executable name records should give), in a cgroup and a
// network namespace of the test's choice, and talks over its standard input
// and output. A test package calls Main first in its TestMain.
package testproc

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
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// modeEnv carries the helper's mode; its arguments follow -test.run=^$.
const modeEnv = "NETFLOWTCPEND_TESTPROC"

// Main runs the helper and exits if this process was started as one;
// otherwise it returns at once.
func Main() {
	mode := os.Getenv(modeEnv)
	if mode == "" {
		return
	}
	if err := run(mode, os.Args[2:]); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// run runs one helper:
//
//	serve ADDR                 listen, accept one connection
//	serve-read ADDR            the same, and read the client's first two
//	                           bytes before saying "socket": a read that is
//	                           over before the test goes on (e.g. starts the
//	                           collector)
//	serve-once ADDR            the same as serve, and close the listener
//	                           after the accept (a one-shot server, or one
//	                           in a graceful restart)
//	serve-mptcp ADDR           serve, listening with MPTCP
//	accept-inherited           accept one connection on the listener handed
//	                           over as fd 3 (a pre-forked worker)
//	connect ADDR               connect and send two bytes
//	connect-mptcp ADDR         the same with MPTCP
//	connect-exec ADDR BIN ADDR2
//	                           connect as connect does; at "close", close
//	                           the socket and exec BIN (same process) as
//	                           connect ADDR2
//	resolve SERVER NAME PORT   ask the DNS server at SERVER for NAME's IPv4
//	                           address, over UDP, and connect to it on PORT
//
// It says "listening ADDR" (servers), "resolved ADDR" (resolve), then
// "socket COOKIE LOCAL REMOTE" for its connected socket, and obeys its
// standard input: "wait-eof" reads until the peer closes, saying "got" when
// data came and "eof" at the end; "close" closes the socket and exits.
func run(mode string, args []string) error {
	var conn *net.TCPConn
	switch mode {
	case "serve", "serve-read", "serve-once", "serve-mptcp", "accept-inherited":
		var ln net.Listener
		var err error
		if mode == "accept-inherited" {
			ln, err = net.FileListener(os.NewFile(3, "listener"))
		} else {
			lc := net.ListenConfig{}
			lc.SetMultipathTCP(mode == "serve-mptcp")
			ln, err = lc.Listen(context.Background(), "tcp", args[0])
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
			if err := ln.Close(); err != nil {
				return err
			}
		}
		if mode == "serve-read" {
			if _, err := io.ReadFull(conn, make([]byte, 2)); err != nil {
				return err
			}
		}
	case "connect", "connect-mptcp", "connect-exec", "resolve":
		addr := args[0]
		if mode == "resolve" {
			ip, err := resolve(args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Println("resolved", ip)
			addr = net.JoinHostPort(ip.String(), args[2])
		}
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
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "close":
			if err := conn.Close(); err != nil || mode != "connect-exec" {
				return err
			}
			return execAs(args[1], "connect", args[2])
		case "wait-eof":
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

// execAs replaces this process's program with the helper bin running mode
// with args: the same process, another executable.
func execAs(bin, mode string, args ...string) error {
	env := []string{modeEnv + "=" + mode}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, modeEnv+"=") {
			env = append(env, e)
		}
	}
	return syscall.Exec(bin, append([]string{bin, "-test.run=^$"}, args...), env)
}

// resolve asks the DNS server at server for name's IPv4 address over UDP.
func resolve(server, name string) (netip.Addr, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", net.JoinHostPort(server, "53"))
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ips, err := r.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		return netip.Addr{}, err
	}
	return ips[0], nil
}

// Binary copies the test binary into dir under each of names (hard links:
// one file), mode 0755, so that helpers run under those executable names,
// also as another user; it returns the path of the first.
func Binary(t testing.TB, dir string, names ...string) string {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	first := filepath.Join(dir, names[0])
	CopyExecutable(t, self, first)
	for _, name := range names[1:] {
		require.NoError(t, os.Link(first, filepath.Join(dir, name)))
	}
	return first
}

// CopyExecutable copies a file to one of mode 0755 (a test's build
// directory is private to root: a copy runs as another user too).
func CopyExecutable(t testing.TB, from, to string) {
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

// Options say where a helper runs.
type Options struct {
	Cgroup *testnet.Cgroup // nil: the test's cgroup
	Netns  *testnet.Netns  // nil: the test's network namespace
	Files  []*os.File      // handed over from fd 3
	// Pin runs the helper on one CPU (the first the test may use), so
	// that every program run in its process context happens on that CPU
	// (not with Netns).
	Pin bool
}

// Proc is a running helper.
type Proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Scanner
	// From its "socket" line (see Socket).
	Cookie        uint64
	Local, Remote netip.AddrPort
	// From its "listening" line (see Listening).
	ListenAddr netip.AddrPort
}

// Start starts bin (see Binary) as a helper running mode with args; it is
// killed after the test.
func Start(t testing.TB, bin string, o Options, mode string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-test.run=^$"}, args...)...)
	cmd.ExtraFiles = o.Files
	cmd.Env = append(os.Environ(), modeEnv+"="+mode)
	cmd.Stderr = os.Stderr
	if o.Cgroup != nil {
		dir, err := os.Open(o.Cgroup.Path)
		require.NoError(t, err)
		defer dir.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	switch {
	case o.Netns != nil:
		require.False(t, o.Pin, "Pin in a network namespace: Netns.Start forks from a thread of its own")
		require.NoError(t, o.Netns.Start(cmd))
	case o.Pin:
		// The child inherits the affinity of the thread that forks it.
		OnOneCPU(t, func() { require.NoError(t, cmd.Start()) })
	default:
		require.NoError(t, cmd.Start())
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return &Proc{t: t, cmd: cmd, stdin: stdin, stdout: bufio.NewScanner(stdout)}
}

// OnOneCPU runs f on a thread that runs only on the first CPU this process
// may use: the system calls f makes, and the kernel programs they run, all
// happen on that CPU, and so do processes f starts.
func OnOneCPU(t testing.TB, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all, one unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &all))
	for cpu := 0; ; cpu++ {
		if all.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	require.NoError(t, unix.SchedSetaffinity(0, &one))
	defer func() { require.NoError(t, unix.SchedSetaffinity(0, &all)) }()
	f()
}

// Expect reads the helper's next line, which must start with word, and
// returns the fields after it.
func (p *Proc) Expect(word string) []string {
	p.t.Helper()
	require.True(p.t, p.stdout.Scan(), "helper ended: %v", p.stdout.Err())
	f := strings.Fields(p.stdout.Text())
	require.NotEmpty(p.t, f)
	require.Equal(p.t, word, f[0], "helper said %q", p.stdout.Text())
	return f[1:]
}

// Listening reads a server's "listening" line and returns its address.
func (p *Proc) Listening() netip.AddrPort {
	p.t.Helper()
	p.ListenAddr = netip.MustParseAddrPort(p.Expect("listening")[0])
	return p.ListenAddr
}

// Socket reads the helper's "socket" line into Cookie, Local and Remote.
func (p *Proc) Socket() {
	p.t.Helper()
	f := p.Expect("socket")
	cookie, err := strconv.ParseUint(f[0], 10, 64)
	require.NoError(p.t, err)
	p.Cookie = cookie
	p.Local, p.Remote = unmapped(f[1]), unmapped(f[2])
}

// unmapped parses an address:port with an IPv4-mapped address unmapped, as
// it is on the wire.
func unmapped(s string) netip.AddrPort {
	ap := netip.MustParseAddrPort(s)
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Say writes line to the helper.
func (p *Proc) Say(line string) {
	p.t.Helper()
	_, err := io.WriteString(p.stdin, line+"\n")
	require.NoError(p.t, err)
}

// Close closes the helper's socket and waits for it to exit.
func (p *Proc) Close() {
	p.t.Helper()
	p.Say("close")
	require.NoError(p.t, p.cmd.Wait())
}

// PID is the helper's process id.
func (p *Proc) PID() int64 { return int64(p.cmd.Process.Pid) }
