//go:build linux

package receiver

import (
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testproc"
)

// exchange runs one connection between a server and a client helper: the
// client sends a little, the server reads it, the client closes, the server
// reads to the end and closes.
func exchange(t *testing.T, srv, cli *helper) {
	t.Helper()
	cli.Socket()
	srv.Socket()
	srv.Say("wait-eof")
	srv.Expect("got")
	cli.Close()
	srv.Expect("eof")
	srv.Close()
}

// byLocalPort finds the record of the local socket on port (for sockets
// whose cookie the helper cannot know: MPTCP subflows).
func byLocalPort(records map[uint64]map[string]any, dir string, port int64) map[string]any {
	for _, a := range records {
		if a[attrDirection.String()] != dir {
			continue
		}
		local := a[attrSourcePort.String()]
		if a[attrEndBy.String()] == "remote" {
			local = a[attrDestinationPort.String()]
		}
		if local == port {
			return a
		}
	}
	return nil
}

// assertOwner checks a record's owner: the helper's process where this
// kernel can tell (known), with its executable's name where it gives it;
// none otherwise.
func assertOwner(t *testing.T, f bpf.Features, a map[string]any, known bool, who *helper, msg string) {
	t.Helper()
	if !known {
		assert.NotContains(t, a, attrProcessPID.String(), "%s: this kernel cannot tell (%+v)", msg, f)
		return
	}
	assert.Equal(t, who.PID(), a[attrProcessPID.String()], msg)
	if f.OwnerExecutable {
		assert.Equal(t, helperName, a[attrProcessExecutable.String()], msg)
	} else {
		assert.NotContains(t, a, attrProcessExecutable.String(), msg)
	}
}

func TestOwnerProcess(t *testing.T) { ownerProcess(t) }

// The same where the kernel has atomic operations but not the helpers of
// Linux 5.11 and 5.19 (RHEL 9's and Ubuntu 22.04's 5.14 and 5.15 kernels):
// the object with atomics, its constants set as the probes would set them
// there. Executable names come through bpf_get_current_task; MPTCP
// subflows have no owner, but where the accepting process names them.
func TestOwnerProcessWithoutNewerHelpers(t *testing.T) {
	ownerProcess(t, bpf.WithoutMPTCPHelper, bpf.WithoutTaskBTF)
}

// The same where cgroup_skb programs cannot read the current task (no
// kernel of the matrix lacks the helpers; the probes would tell): the
// connecting process is the one that created the socket, remembered by
// cgroup/sock_create.
func TestOwnerProcessWithoutOwnerAtConnect(t *testing.T) {
	ownerProcess(t, bpf.WithoutOwnerAtConnect)
}

func ownerProcess(t *testing.T, without ...string) {
	t.Helper()
	// One receiver for the three cases (a start verifies the programs,
	// seconds in an emulated guest); their records are apart by port.
	h := newHarness(t)
	h.startWithSettings(Config{RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond},
		receivertest.NewNopSettings(metadata.Type), func(o *options) { o.without = append(o.without, without...) })
	if slices.Contains(without, bpf.WithoutMPTCPHelper) {
		require.False(t, h.features.MPTCPOwner)
	}
	if slices.Contains(without, bpf.WithoutOwnerAtConnect) {
		require.False(t, h.features.OwnerAtConnect)
	}
	bin := helperBinary(t)
	type exchanged struct {
		server, client string
		srv, cli       *helper
		addr           netip.AddrPort
	}
	var cases []exchanged
	for _, tt := range []struct{ server, client string }{
		{"serve", "connect"},
		{"serve-mptcp", "connect"},       // Go's default listener, a plain client
		{"serve-mptcp", "connect-mptcp"}, // MPTCP on both ends: only subflows carry TCP
	} {
		srv := startHelper(t, bin, h.cg, nil, tt.server, "127.0.0.1:0")
		addr := srv.Listening()
		cli := startHelper(t, bin, h.cg, nil, tt.client, addr.String())
		exchange(t, srv, cli)
		cases = append(cases, exchanged{tt.server, tt.client, srv, cli, addr})
	}
	h.stop()
	got := h.attrsByCookie()
	require.Len(t, got, 2*len(cases))
	f := h.features
	t.Logf("owner of accepted sockets: %s; MPTCP %v, MPTCP owner %v", f.OwnerOfAccepted, f.MPTCP, f.MPTCPOwner)

	for _, c := range cases {
		t.Run(c.server+"/"+c.client, func(t *testing.T) {
			// What this kernel can tell. A kernel without MPTCP makes
			// plain TCP sockets for Go's MPTCP ones. The TCP subflows of
			// MPTCP sockets are the kernel's: they take the MPTCP socket's
			// owner, or the accepting process.
			subflows := f.MPTCP && c.client == "connect-mptcp"
			serverKnown := f.OwnerOfAccepted.Names(true, false) // the server reads only
			if subflows {
				serverKnown = f.MPTCPOwner || f.OwnerOfAccepted == bpf.OwnerAtAccept
			}

			client := byLocalPort(got, "outgoing", int64(c.cli.Local.Port()))
			require.NotNil(t, client)
			assert.Equal(t, "outgoing", client[attrDirection.String()])
			// The first subflow's SYN leaves in connect(): where the
			// egress program reads the task there, it names the process.
			assertOwner(t, f, client, !subflows || f.MPTCPOwner || f.OwnerAtConnect, c.cli, "the connecting process")

			server := byLocalPort(got, "incoming", int64(c.addr.Port()))
			require.NotNil(t, server)
			assertOwner(t, f, server, serverKnown, c.srv, "the accepting process")
		})
	}
}

// Connections of other processes, open before Start: the scan at start
// gives their direction and owner, with the listener still open and with it
// closed after the accept (a one-shot server, a graceful restart), on
// loopback and across network namespaces.
func TestConnectionsOpenBeforeStart(t *testing.T) {
	a, b := testnet.NewVethPair(t)
	h := newHarness(t)
	bin := helperBinary(t)
	type open struct {
		name     string
		cli, srv *helper
	}
	var cases []open
	for _, tt := range []struct {
		name           string
		server         string // helper mode: serve-once closes its listener after the accept
		serverNS       *testnet.Netns
		clientNS       *testnet.Netns
		listen, dialTo string
	}{
		{"loopback", "serve", nil, nil, "127.0.0.1:0", "127.0.0.1"},
		{"dual-stack listener, IPv4 client", "serve", nil, nil, "[::]:0", "127.0.0.1"},
		{"second network namespace", "serve", b, a, "10.77.0.2:0", "10.77.0.2"},
		{"IPv6 across namespaces", "serve", b, a, "[fd77::2]:0", "fd77::2"},
		{"listener closed, loopback", "serve-once", nil, nil, "127.0.0.1:0", "127.0.0.1"},
		{"listener closed, IPv6 loopback", "serve-once", nil, nil, "[::1]:0", "::1"},
		{"listener closed, second network namespace", "serve-once", b, a, "10.77.0.2:0", "10.77.0.2"},
		{"listener closed, IPv6 across namespaces", "serve-once", b, a, "[fd77::2]:0", "fd77::2"},
	} {
		// Every case's connection is open before the one Start (a start
		// verifies the programs, seconds in an emulated guest); the scan
		// at start finds them all, and their records are apart by cookie.
		srv := startHelper(t, bin, h.cg, tt.serverNS, tt.server, tt.listen)
		port := srv.Listening().Port()
		cli := startHelper(t, bin, h.cg, tt.clientNS, "connect",
			netip.AddrPortFrom(netip.MustParseAddr(tt.dialTo), port).String())
		cli.Socket()
		srv.Socket()
		cases = append(cases, open{tt.name, cli, srv})
	}
	time.Sleep(50 * time.Millisecond) // the handshakes are over well before Start

	h.start()
	for _, c := range cases {
		c.srv.Say("wait-eof")
		c.srv.Expect("got")
		c.cli.Close()
		c.srv.Expect("eof")
		c.srv.Close()
	}
	h.stop()
	got := h.attrsByCookie()
	require.Len(t, got, 2*len(cases))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, side := range []struct {
				who *helper
				dir string
			}{{c.cli, "outgoing"}, {c.srv, "incoming"}} {
				a := got[side.who.Cookie]
				require.NotNil(t, a, side.dir)
				assert.Equal(t, side.dir, a[attrDirection.String()], "from the scan at start")
				assert.Equal(t, false, a[attrStartObserved.String()])
				assert.NotContains(t, a, attrStartTime.String())
				assert.Equal(t, side.who.PID(), a[attrProcessPID.String()], "from the scan at start")
				assert.Equal(t, helperName, a[attrProcessExecutable.String()])
			}
		})
	}
}

// A process in a cgroup named as Docker names its containers: its records
// come in a ResourceLogs with container.id, apart from the others; every
// ResourceLogs has host.name.
func TestRecordsAreGroupedByContainer(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	h := newHarness(t)
	container := h.cg.Child(t, "docker-"+id+".scope")
	h.start()
	bin := helperBinary(t)
	srv := startHelper(t, bin, container, nil, "serve", "127.0.0.1:0")
	cli := startHelper(t, bin, h.cg, nil, "connect", srv.Listening().String())
	exchange(t, srv, cli)
	h.stop()
	srvPID := int64(0) // none
	if h.features.OwnerOfAccepted.Names(true, false) {
		srvPID = srv.PID()
	}

	host, err := os.Hostname()
	require.NoError(t, err)
	byContainer := map[string][]int64{}
	h.eachRecord(func(res pcommon.Resource, lr plog.LogRecord) {
		hn, _ := res.Attributes().Get(AttrHostName)
		assert.Equal(t, host, hn.Str())
		cid, _ := res.Attributes().Get(AttrContainerID)
		pid, _ := lr.Attributes().Get(attrProcessPID.String())
		byContainer[cid.Str()] = append(byContainer[cid.Str()], pid.Int())
	})
	assert.Equal(t, map[string][]int64{id: {srvPID}, "": {cli.PID()}}, byContainer)
}

// A pre-forked server: the parent (here the test) makes the listener, a
// worker accepts on it. The worker owns the connection, not the listener's
// maker. An accepted socket the process never read or wrote before the end
// names the process that accepted it where the kernel tells (fexit), and
// else no process rather than the listener's maker.
func TestOwnerOfAcceptedSocketIsTheWorker(t *testing.T) {
	h := newHarness(t)
	h.start()
	var ln *net.TCPListener
	var err error
	h.cg.Run(t, func() {
		ln, err = testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
		require.NoError(t, err)
	})
	defer ln.Close()
	lnFile, err := ln.File()
	require.NoError(t, err)
	defer lnFile.Close()
	bin := helperBinary(t)

	worker := startHelper(t, bin, h.cg, nil, "accept-inherited", "", lnFile)
	addr := worker.Listening()
	cli := startHelper(t, bin, h.cg, nil, "connect", addr.String())
	exchange(t, worker, cli)

	idle := startHelper(t, bin, h.cg, nil, "accept-inherited", "", lnFile)
	idle.Listening()
	quiet := startHelper(t, bin, h.cg, nil, "connect", addr.String())
	quiet.Socket()
	idle.Socket()
	quiet.Close() // before the worker reads anything
	time.Sleep(50 * time.Millisecond)
	idle.Close()
	h.stop()

	got := h.attrsByCookie()
	f := h.features
	t.Logf("owner of accepted sockets: %s", f.OwnerOfAccepted)
	served := got[worker.Cookie]
	require.NotNil(t, served)
	assertOwner(t, f, served, f.OwnerOfAccepted.Names(true, false), worker, "the worker, not the listener's maker")
	unread := got[idle.Cookie]
	require.NotNil(t, unread)
	assertOwner(t, f, unread, f.OwnerOfAccepted.Names(false, false), idle, "never read or written before the end")
	assert.Equal(t, quiet.PID(), got[quiet.Cookie][attrProcessPID.String()])
}

// Where the kernel has no trampolines, the send and receive tracepoints
// remember the sockets they are done with, by address, until the socket
// closes; the kernel then gives that address to new sockets, which must
// still get their owner. Here the fallback runs wherever the kernel has it
// (the fexit program is left out), for connections in turn.
func TestOwnerOfAcceptedSocketsInTurnOnTheFallback(t *testing.T) {
	h := newHarness(t)
	h.startWithSettings(Config{RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond},
		receivertest.NewNopSettings(metadata.Type), func(o *options) { o.without = append(o.without, bpf.AcceptProgram) })
	t.Logf("owner of accepted sockets: %s", h.features.OwnerOfAccepted)
	var ln *net.TCPListener
	h.cg.Run(t, func() {
		var err error
		ln, err = testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
		require.NoError(t, err)
	})
	defer ln.Close()
	var cookies []uint64
	for range 200 {
		c, err := testnet.Dial(testnet.AddrPort(ln.Addr()))
		require.NoError(t, err)
		s, err := ln.AcceptTCP()
		require.NoError(t, err)
		ck, err := testnet.Cookie(s)
		require.NoError(t, err)
		cookies = append(cookies, ck)
		_, err = c.Write([]byte("x"))
		require.NoError(t, err)
		readExactly(t, s, "x")
		_, err = s.Write([]byte("y"))
		require.NoError(t, err)
		readExactly(t, c, "y")
		require.NoError(t, c.Close())
		require.NoError(t, readEnd(t, s))
		require.NoError(t, s.Close())
	}
	h.stop()
	got := h.attrsByCookie()
	known := h.features.OwnerOfAccepted.Names(true, true)
	var named int
	for _, ck := range cookies {
		a := got[ck]
		require.NotNil(t, a)
		if a[attrProcessPID.String()] == int64(os.Getpid()) {
			named++
		}
	}
	if known {
		assert.Equal(t, len(cookies), named, "every accepted socket names its process")
	} else {
		assert.Zero(t, named, "this kernel cannot tell")
	}
}

// Each CPU keeps the executable names it last read, by process (exe_names,
// owner.h). A record must still name the program that made its socket: a
// process that connects again and again from one CPU (names from the
// cache), and one that execs another program between two connections, on
// one CPU too (the same process, another executable: the cache must not
// give the first name).
func TestExecutableNamesKeptByEachCPU(t *testing.T) {
	for _, tt := range []struct {
		name    string
		without []string
	}{
		{"task", nil},
		{"probe reads", []string{bpf.WithoutTaskBTF}}, // RHEL 9, Ubuntu 22.04
	} {
		t.Run(tt.name, func(t *testing.T) { executableNames(t, tt.without...) })
	}
}

func executableNames(t *testing.T, without ...string) {
	t.Helper()
	h := newHarness(t)
	h.startWithSettings(Config{RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond},
		receivertest.NewNopSettings(metadata.Type), func(o *options) { o.without = append(o.without, without...) })
	var ln *net.TCPListener
	h.cg.Run(t, func() {
		var err error
		ln, err = testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
		require.NoError(t, err)
	})
	served := make(chan error, 1)
	go func() { served <- serveUntilClosed(ln) }()
	addr := testnet.AddrPort(ln.Addr())

	var own []uint64
	testproc.OnOneCPU(t, func() {
		h.cg.Run(t, func() {
			for range 20 {
				c, err := testnet.Dial(addr)
				require.NoError(t, err)
				cookie, err := testnet.Cookie(c)
				require.NoError(t, err)
				own = append(own, cookie)
				require.NoError(t, c.Close())
			}
		})
	})

	dir := t.TempDir()
	bin := testproc.Binary(t, dir, helperName, "nfexec")
	cli := testproc.Start(t, bin, testproc.Options{Cgroup: h.cg, Pin: true},
		"connect-exec", addr.String(), filepath.Join(dir, "nfexec"), addr.String())
	cli.Socket()
	before := cli.Cookie
	cli.Say("close")
	cli.Socket() // the same process, after its exec
	after := cli.Cookie
	cli.Close()

	require.NoError(t, ln.Close())
	require.ErrorIs(t, <-served, net.ErrClosed)
	h.stop()
	got := h.attrsByCookie()
	name := func(cookie uint64) any {
		a := got[cookie]
		require.NotNil(t, a, "no record of socket %d", cookie)
		return a[attrProcessExecutable.String()]
	}
	if !h.features.OwnerExecutable {
		t.Skip("this kernel gives no executable names")
	}
	self, err := os.Executable()
	require.NoError(t, err)
	for i, cookie := range own {
		assert.Equal(t, filepath.Base(self), name(cookie), "the test's connection %d", i)
		assert.Equal(t, int64(os.Getpid()), got[cookie][attrProcessPID.String()])
	}
	assert.Equal(t, helperName, name(before), "before the exec")
	assert.Equal(t, "nfexec", name(after), "after the exec")
	assert.Equal(t, cli.PID(), got[after][attrProcessPID.String()])
}

// serveUntilClosed accepts connections on ln until it is closed, reading
// each to its end and closing it.
func serveUntilClosed(ln *net.TCPListener) error {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			return err
		}
		go func() {
			_, _ = io.Copy(io.Discard, c)
			_ = c.Close()
		}()
	}
}
