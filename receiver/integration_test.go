//go:build linux

package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/otlpsink"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	tp "github.com/netflowtcpend/netflowtcpend/internal/testutils/testpacket"
)

// These tests attach the receiver to a child cgroup made for each test and
// drive real TCP connections over loopback and across a veth pair between
// two network namespaces. Every record is matched to a local socket by its
// cookie: each monitored socket must yield exactly the record expected, and
// nothing else may appear.

// record is what the tests compare of a log record.
type record struct {
	Cookie    uint64
	Direction string
	Source    string // address:port
	Dest      string
	Local     string // network.local.*: the socket's own address:port
	Peer      string // network.peer.*
	// netflow.local.translated.* and netflow.peer.translated.*: "" when
	// absent (nothing translated).
	LocalTranslated string
	PeerTranslated  string
	EndBy           string
	Reason          string
	NetType         string
	Netns           uint32
}

// harness is one receiver attached to one test cgroup.
type harness struct {
	t      *testing.T
	cg     *testnet.Cgroup
	sink   *consumertest.LogsSink
	rcv    *Receiver
	logger *zap.Logger // nil: none
	// options, if not nil, changes the receiver's options (newReceiver).
	options func(*options)
	// What the kernel gives the programs (after start): tests expect
	// what it can give, and nothing it cannot.
	features bpf.Features
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	testenv.RequireRoot(t)
	return &harness{t: t, cg: testnet.NewCgroup(t)}
}

func (h *harness) start() {
	h.t.Helper()
	h.startWith(Config{RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond})
}

func (h *harness) startWith(s Config) {
	h.t.Helper()
	set := receivertest.NewNopSettings(metadata.Type)
	if h.logger != nil {
		set.Logger = h.logger
	}
	h.startWithSettings(s, set, h.options)
}

// startWithSettings starts the receiver with set (its logger and
// telemetry); configure, if not nil, changes its options (newReceiver).
func (h *harness) startWithSettings(s Config, set receiver.Settings, configure func(*options)) {
	h.t.Helper()
	obsrecv, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID: set.ID, Transport: "ebpf", ReceiverCreateSettings: set,
	})
	require.NoError(h.t, err)
	h.sink = new(consumertest.LogsSink)
	s.CgroupPath = h.cg.Path
	opts := defaultOptions()
	opts.without = slices.Clone(testWithout)
	if configure != nil {
		configure(&opts)
	}
	h.rcv, err = newReceiver(&s, set.TelemetrySettings, obsrecv, Consumers{Logs: h.sink}, opts)
	require.NoError(h.t, err)
	require.NoError(h.t, h.rcv.Start(context.Background(), nil))
	h.t.Cleanup(func() { _ = h.rcv.Shutdown(context.Background()) })
	h.features = h.rcv.objs.Features
}

// stop waits for late segments (a FIN or RST that must not yield a second
// record), shuts the receiver down, which passes on everything the kernel
// wrote, and returns the records.
func (h *harness) stop() []record {
	h.t.Helper()
	time.Sleep(100 * time.Millisecond)
	require.NoError(h.t, h.rcv.Shutdown(context.Background()))
	var out []record
	h.eachRecord(func(_ pcommon.Resource, lr plog.LogRecord) {
		a := lr.Attributes()
		str := func(key string) string { v, _ := a.Get(key); return v.AsString() }
		num := func(key string) int64 { v, _ := a.Get(key); return v.Int() }
		addrPort := func(addrKey, portKey string) string {
			if _, ok := a.Get(addrKey); !ok {
				return ""
			}
			return netip.AddrPortFrom(netip.MustParseAddr(str(addrKey)), uint16(num(portKey))).String()
		}
		out = append(out, record{
			Cookie:          uint64(num(attrSocketCookie.String())),
			Direction:       str(attrDirection.String()),
			Source:          addrPort(attrSourceAddress.String(), attrSourcePort.String()),
			Dest:            addrPort(attrDestinationAddress.String(), attrDestinationPort.String()),
			Local:           addrPort(attrLocalAddress.String(), attrLocalPort.String()),
			Peer:            addrPort(attrPeerAddress.String(), attrPeerPort.String()),
			LocalTranslated: addrPort(attrLocalTranslatedAddress.String(), attrLocalTranslatedPort.String()),
			PeerTranslated:  addrPort(attrPeerTranslatedAddress.String(), attrPeerTranslatedPort.String()),
			EndBy:           str(attrEndBy.String()),
			Reason:          str(attrEndReason.String()),
			NetType:         str(attrNetworkType.String()),
			Netns:           uint32(num(attrNetns.String())),
		})
	})
	return out
}

// eachRecord calls f for every record the receiver passed on.
func (h *harness) eachRecord(f func(pcommon.Resource, plog.LogRecord)) {
	for _, logs := range h.sink.AllLogs() {
		otlpsink.ForEach(logs, f)
	}
}

// transport says where the two ends of a test connection live.
type transport struct {
	name                   string
	client, server         *testnet.Netns // nil: this process's namespace
	clientAddr, serverAddr netip.Addr
}

func transports(t *testing.T) []transport {
	t.Helper()
	a, b := testnet.NewVethPair(t)
	return []transport{
		loopback4,
		{name: "loopback6", clientAddr: netip.IPv6Loopback(), serverAddr: netip.IPv6Loopback()},
		{name: "veth4", client: a, server: b, clientAddr: a.Addr4, serverAddr: b.Addr4},
		{name: "veth6", client: a, server: b, clientAddr: a.Addr6, serverAddr: b.Addr6},
	}
}

var loopback4 = transport{
	name: "loopback4", clientAddr: netip.MustParseAddr("127.0.0.1"), serverAddr: netip.MustParseAddr("127.0.0.1"),
}

func (tr transport) netType() string {
	if tr.serverAddr.Is4() {
		return "ipv4"
	}
	return "ipv6"
}

func inode(ns *testnet.Netns) uint32 {
	if ns == nil {
		return testnet.HostInode()
	}
	return ns.Inode()
}

func in(ns *testnet.Netns, f func() error) error {
	if ns == nil {
		return f()
	}
	return ns.Do(f)
}

// conn is one TCP connection with both of its local sockets.
type conn struct {
	client, server             *net.TCPConn
	clientCookie, serverCookie uint64
	clientAddr, serverAddr     netip.AddrPort
	clientNetns, serverNetns   uint32
}

// dial connects a client to a new listener over tr. Sockets are created in
// the cgroup when monitored is true; the accepted socket belongs to its
// listener's cgroup. The listener is closed after the accept: a listener
// must never yield a record.
func dial(t *testing.T, tr transport, h *harness, serverMonitored, clientMonitored bool) *conn {
	t.Helper()
	var ln *net.TCPListener
	var c conn
	maybeIn := func(monitored bool, f func()) {
		if monitored {
			h.cg.Run(t, f)
		} else {
			f()
		}
	}
	maybeIn(serverMonitored, func() {
		require.NoError(t, in(tr.server, func() (err error) {
			ln, err = testnet.Listen(netip.AddrPortFrom(tr.serverAddr, 0))
			return err
		}))
	})
	defer ln.Close()
	maybeIn(clientMonitored, func() {
		require.NoError(t, in(tr.client, func() (err error) {
			c.client, err = testnet.Dial(testnet.AddrPort(ln.Addr()))
			return err
		}))
	})
	var err error
	c.server, err = ln.AcceptTCP()
	require.NoError(t, err)
	c.clientCookie, err = testnet.Cookie(c.client)
	require.NoError(t, err)
	c.serverCookie, err = testnet.Cookie(c.server)
	require.NoError(t, err)
	c.clientAddr = testnet.AddrPort(c.client.LocalAddr())
	c.serverAddr = testnet.AddrPort(c.server.LocalAddr())
	c.clientNetns, c.serverNetns = inode(tr.client), inode(tr.server)
	t.Cleanup(func() { c.client.Close(); c.server.Close() })

	// Both ends work.
	_, err = c.client.Write([]byte("ping"))
	require.NoError(t, err)
	readExactly(t, c.server, "ping")
	return &c
}

func readExactly(t *testing.T, c net.Conn, want string) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, len(want))
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, want, string(buf))
}

// readEnd reads until the connection's end and returns the error (nil for
// a FIN), which proves that TCP took the terminating segment.
func readEnd(t *testing.T, c net.Conn) error {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := io.Copy(io.Discard, c)
	var nerr net.Error
	require.False(t, errors.As(err, &nerr) && nerr.Timeout(), "connection did not end")
	return err
}

func requireReset(t *testing.T, c net.Conn) {
	t.Helper()
	assert.ErrorIs(t, readEnd(t, c), syscall.ECONNRESET)
}

func (c *conn) clientRecord(dir, endBy, reason, netType string) record {
	r := record{Cookie: c.clientCookie, Direction: dir, EndBy: endBy, Reason: reason, NetType: netType, Netns: c.clientNetns,
		Local: c.clientAddr.String(), Peer: c.serverAddr.String()}
	r.Source, r.Dest = c.clientAddr.String(), c.serverAddr.String()
	if endBy == "remote" {
		r.Source, r.Dest = c.serverAddr.String(), c.clientAddr.String()
	}
	return r
}

func (c *conn) serverRecord(dir, endBy, reason, netType string) record {
	r := record{Cookie: c.serverCookie, Direction: dir, EndBy: endBy, Reason: reason, NetType: netType, Netns: c.serverNetns,
		Local: c.serverAddr.String(), Peer: c.clientAddr.String()}
	r.Source, r.Dest = c.serverAddr.String(), c.clientAddr.String()
	if endBy == "remote" {
		r.Source, r.Dest = c.clientAddr.String(), c.serverAddr.String()
	}
	return r
}

func TestConnectionEnds(t *testing.T) {
	testenv.RequireRoot(t)
	connectionEnds(t, transports(t))
}

// The same over loopback with the object for kernels without atomic
// operations (before 5.12), whose once-only flags are guarded by a
// bpf_spin_lock: the guests of make test-kernels run it on such a kernel.
func TestConnectionEndsWithoutAtomics(t *testing.T) {
	testenv.RequireRoot(t)
	connectionEnds(t, []transport{loopback4}, bpf.WithoutAtomics)
}

func connectionEnds(t *testing.T, trs []transport, without ...string) {
	t.Helper()
	scenarios := []struct {
		name string
		run  func(t *testing.T, c *conn)
		// want are the records of the client and of the server socket.
		want func(c *conn, nt string) []record
	}{
		{
			name: "client closes",
			run: func(t *testing.T, c *conn) {
				require.NoError(t, c.client.Close())
				require.NoError(t, readEnd(t, c.server))
				require.NoError(t, c.server.Close())
			},
			want: func(c *conn, nt string) []record {
				return []record{c.clientRecord("outgoing", "local", "fin", nt), c.serverRecord("incoming", "remote", "fin", nt)}
			},
		},
		{
			name: "server closes",
			run: func(t *testing.T, c *conn) {
				require.NoError(t, c.server.Close())
				require.NoError(t, readEnd(t, c.client))
				require.NoError(t, c.client.Close())
			},
			want: func(c *conn, nt string) []record {
				return []record{c.clientRecord("outgoing", "remote", "fin", nt), c.serverRecord("incoming", "local", "fin", nt)}
			},
		},
		{
			name: "client resets",
			run: func(t *testing.T, c *conn) {
				require.NoError(t, c.client.SetLinger(0))
				require.NoError(t, c.client.Close())
				requireReset(t, c.server)
				require.NoError(t, c.server.Close())
			},
			want: func(c *conn, nt string) []record {
				return []record{c.clientRecord("outgoing", "local", "rst", nt), c.serverRecord("incoming", "remote", "rst", nt)}
			},
		},
		{
			name: "server resets",
			run: func(t *testing.T, c *conn) {
				require.NoError(t, c.server.SetLinger(0))
				require.NoError(t, c.server.Close())
				requireReset(t, c.client)
				require.NoError(t, c.client.Close())
			},
			want: func(c *conn, nt string) []record {
				return []record{c.clientRecord("outgoing", "remote", "rst", nt), c.serverRecord("incoming", "local", "rst", nt)}
			},
		},
		{
			name: "client half-closes, data still flows back",
			run: func(t *testing.T, c *conn) {
				require.NoError(t, c.client.CloseWrite())
				require.NoError(t, readEnd(t, c.server))
				_, err := c.server.Write([]byte("late reply"))
				require.NoError(t, err)
				readExactly(t, c.client, "late reply")
				require.NoError(t, c.server.Close())
				require.NoError(t, readEnd(t, c.client))
				require.NoError(t, c.client.Close())
			},
			want: func(c *conn, nt string) []record {
				return []record{c.clientRecord("outgoing", "local", "fin", nt), c.serverRecord("incoming", "remote", "fin", nt)}
			},
		},
		{
			name: "FIN then RST",
			run: func(t *testing.T, c *conn) {
				require.NoError(t, c.client.CloseWrite())
				require.NoError(t, readEnd(t, c.server))
				require.NoError(t, c.server.SetLinger(0))
				require.NoError(t, c.server.Close())
				requireReset(t, c.client)
				require.NoError(t, c.client.Close())
			},
			want: func(c *conn, nt string) []record {
				return []record{c.clientRecord("outgoing", "local", "fin", nt), c.serverRecord("incoming", "remote", "fin", nt)}
			},
		},
	}
	// One receiver watches every case: a start verifies the programs,
	// which takes seconds in an emulated guest of the kernel matrix, and
	// the cases' connections are apart by their cookies.
	h := newHarness(t)
	h.startWithSettings(Config{RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond},
		receivertest.NewNopSettings(metadata.Type), func(o *options) { o.without = append(o.without, without...) })
	if slices.Contains(without, bpf.WithoutAtomics) {
		require.False(t, h.features.Atomics)
	}
	type ran struct {
		name string
		want []record
	}
	var cases []ran
	for _, tr := range trs {
		for _, sc := range scenarios {
			t.Run(tr.name+"/"+sc.name, func(t *testing.T) {
				c := dial(t, tr, h, true, true)
				sc.run(t, c)
				cases = append(cases, ran{tr.name + "/" + sc.name, sc.want(c, tr.netType())})
			})
		}
	}
	// After the last case, so that a late FIN or RST of any case that
	// yields a second record is among them.
	got := h.stop()
	byCookie := map[uint64][]record{}
	for _, r := range got {
		byCookie[r.Cookie] = append(byCookie[r.Cookie], r)
	}
	n := 0
	for _, c := range cases {
		var records []record
		for _, w := range c.want {
			records = append(records, byCookie[w.Cookie]...)
		}
		assert.ElementsMatch(t, c.want, records, c.name)
		n += len(c.want)
	}
	assert.Len(t, got, n, "no record of a socket that no case made")
}

func TestRefusedConnect(t *testing.T) {
	testenv.RequireRoot(t)
	// One receiver for every transport (a start verifies the programs,
	// seconds in an emulated guest); the records are apart by cookie.
	h := newHarness(t)
	h.start()
	var want []record
	for _, tr := range transports(t) {
		t.Run(tr.name, func(t *testing.T) {
			// A port nobody listens on.
			var closedPort uint16
			require.NoError(t, in(tr.server, func() error {
				ln, err := testnet.Listen(netip.AddrPortFrom(tr.serverAddr, 0))
				if err != nil {
					return err
				}
				closedPort = testnet.AddrPort(ln.Addr()).Port()
				return ln.Close()
			}))
			server := netip.AddrPortFrom(tr.serverAddr, closedPort)

			var client netip.AddrPort
			var cookie uint64
			h.cg.Run(t, func() {
				require.NoError(t, in(tr.client, func() (err error) {
					client, cookie, err = connectRefused(tr.clientAddr, server)
					return err
				}))
			})
			want = append(want, record{Cookie: cookie, Direction: "outgoing", Source: server.String(), Dest: client.String(),
				Local: client.String(), Peer: server.String(),
				EndBy: "remote", Reason: "rst", NetType: tr.netType(), Netns: inode(tr.client)})
		})
	}
	assert.ElementsMatch(t, want, h.stop())
}

// connectRefused connects from client with raw system calls, so that the
// socket's address and cookie are known although the connect fails.
func connectRefused(client netip.Addr, server netip.AddrPort) (netip.AddrPort, uint64, error) {
	var family int
	var local, remote unix.Sockaddr
	if server.Addr().Is4() {
		family, local = unix.AF_INET, &unix.SockaddrInet4{Addr: client.As4()}
		remote = &unix.SockaddrInet4{Port: int(server.Port()), Addr: server.Addr().As4()}
	} else {
		family, local = unix.AF_INET6, &unix.SockaddrInet6{Addr: client.As16()}
		remote = &unix.SockaddrInet6{Port: int(server.Port()), Addr: server.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, local); err != nil {
		return netip.AddrPort{}, 0, err
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	if err := unix.Connect(fd, remote); !errors.Is(err, unix.ECONNREFUSED) {
		return netip.AddrPort{}, 0, fmt.Errorf("connect to %s: want ECONNREFUSED, got %w", server, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	var port int
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		port = sa.Port
	case *unix.SockaddrInet6:
		port = sa.Port
	}
	return netip.AddrPortFrom(client, uint16(port)), cookie, nil
}

func TestConnectionOpenedBeforeStart(t *testing.T) {
	h := newHarness(t)
	tr := loopback4
	c := dial(t, tr, h, true, true)
	h.start()
	require.NoError(t, c.client.Close())
	require.NoError(t, readEnd(t, c.server))
	require.NoError(t, c.server.Close())
	// The handshake was not seen; the scan at start tells the direction,
	// although the listener was closed after the accept.
	assert.ElementsMatch(t, []record{
		c.clientRecord("outgoing", "local", "fin", "ipv4"),
		c.serverRecord("incoming", "remote", "fin", "ipv4"),
	}, h.stop())
}

func TestOnlySocketsInTheCgroup(t *testing.T) {
	h := newHarness(t)
	h.start()
	tr := loopback4

	outside := dial(t, tr, h, false, false)
	serverInside := dial(t, tr, h, true, false)
	clientInside := dial(t, tr, h, false, true)
	for _, c := range []*conn{outside, serverInside, clientInside} {
		require.NoError(t, c.client.Close())
		require.NoError(t, readEnd(t, c.server))
		require.NoError(t, c.server.Close())
	}
	assert.ElementsMatch(t, []record{
		serverInside.serverRecord("incoming", "remote", "fin", "ipv4"),
		clientInside.clientRecord("outgoing", "local", "fin", "ipv4"),
	}, h.stop())
}

// TCP_REPAIR lets a privileged test read a socket's sequence numbers.
const (
	tcpRecvQueue = 1
	tcpSendQueue = 2
)

// sequenceNumbers returns the socket's rcv_nxt and snd_nxt.
func sequenceNumbers(t *testing.T, c *net.TCPConn) (rcvNxt, sndNxt uint32) {
	t.Helper()
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, raw.Control(func(fd uintptr) {
		s := int(fd)
		require.NoError(t, unix.SetsockoptInt(s, unix.SOL_TCP, unix.TCP_REPAIR, 1))
		defer func() { require.NoError(t, unix.SetsockoptInt(s, unix.SOL_TCP, unix.TCP_REPAIR, 0)) }()
		for _, q := range []struct {
			queue int
			dst   *uint32
		}{{tcpRecvQueue, &rcvNxt}, {tcpSendQueue, &sndNxt}} {
			require.NoError(t, unix.SetsockoptInt(s, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, q.queue))
			v, err := unix.GetsockoptInt(s, unix.SOL_TCP, unix.TCP_QUEUE_SEQ)
			require.NoError(t, err)
			*q.dst = uint32(v)
		}
	}))
	return rcvNxt, sndNxt
}

// waitAllAcked waits until the peer has acknowledged all that c sent, so
// that no segment of the connection is still on its way (a delayed ACK, or
// one queued on another CPU's backlog).
func waitAllAcked(t *testing.T, c *net.TCPConn) {
	t.Helper()
	require.Eventually(t, func() bool {
		info, err := testnet.TCPInfo(c)
		require.NoError(t, err)
		return info.Unacked == 0
	}, 5*time.Second, time.Millisecond, "the peer never acknowledged what was sent")
}

// inject sends a crafted IPv4 segment through a raw socket, as an attacker
// on the path would.
func inject(t *testing.T, s tp.Segment) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	require.NoError(t, err)
	defer unix.Close(fd)
	require.NoError(t, unix.Sendto(fd, s.IPv4(), 0, &unix.SockaddrInet4{Addr: s.Dst.Addr().As4()}))
}

func TestSegmentsTCPDiscardsEndNothing(t *testing.T) {
	h := newHarness(t)
	h.start()
	tr := loopback4
	c := dial(t, tr, h, true, true)

	rcvNxt, sndNxt := sequenceNumbers(t, c.client)
	forged := func(seq, ack uint32, flags uint8) tp.Segment {
		return tp.Segment{Src: c.serverAddr, Dst: c.clientAddr, Seq: seq, Ack: ack, Flags: flags}
	}
	for _, s := range []tp.Segment{
		forged(rcvNxt+1<<30, 0, tp.RST),             // far out of window
		forged(rcvNxt-1<<30, 0, tp.RST|tp.ACK),      // far behind
		forged(rcvNxt+1, 0, tp.RST),                 // in window, not exact: challenge ACK only
		forged(rcvNxt+1<<30, sndNxt, tp.FIN|tp.ACK), // FIN out of window
		forged(rcvNxt, sndNxt+1<<30, tp.FIN|tp.ACK), // FIN acknowledging data never sent
		forged(rcvNxt, 0, tp.FIN),                   // FIN without ACK
	} {
		inject(t, s)
	}

	// The connection is alive in both directions.
	_, err := c.server.Write([]byte("still here"))
	require.NoError(t, err)
	readExactly(t, c.client, "still here")
	_, err = c.client.Write([]byte("ping"))
	require.NoError(t, err)
	readExactly(t, c.server, "ping")

	require.NoError(t, c.client.Close())
	require.NoError(t, readEnd(t, c.server))
	require.NoError(t, c.server.Close())
	assert.ElementsMatch(t, []record{
		c.clientRecord("outgoing", "local", "fin", "ipv4"),
		c.serverRecord("incoming", "remote", "fin", "ipv4"),
	}, h.stop())
}

func TestForgedRSTThatTCPAcceptsEndsTheConnection(t *testing.T) {
	h := newHarness(t)
	h.start()
	tr := loopback4
	c := dial(t, tr, h, true, true)
	// The server's ACK of dial's ping must have reached the client first:
	// arriving after the forged RST, it would meet no socket, and the
	// kernel's answering RST would end the server's side before its FIN.
	waitAllAcked(t, c.client)

	rcvNxt, _ := sequenceNumbers(t, c.client)
	inject(t, tp.Segment{Src: c.serverAddr, Dst: c.clientAddr, Seq: rcvNxt, Flags: tp.RST})
	requireReset(t, c.client)
	require.NoError(t, c.client.Close())
	require.NoError(t, c.server.Close())

	records := h.stop()
	assert.Contains(t, records, c.clientRecord("outgoing", "remote", "rst", "ipv4"))
	assert.Contains(t, records, c.serverRecord("incoming", "local", "fin", "ipv4"))
	assert.Len(t, records, 2)
}

// The kernel's control socket, which answers segments that match no socket,
// is a raw socket in the root cgroup; a raw socket in the monitored cgroup
// takes the same path through the programs and must not yield a record.
func TestRawSocketsAreNotConnections(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.cg.Run(t, func() {
		for _, flags := range []uint8{tp.FIN | tp.ACK, tp.RST, tp.RST | tp.ACK} {
			inject(t, tp.Segment{
				Src: netip.MustParseAddrPort("127.0.0.1:40000"),
				Dst: netip.MustParseAddrPort("127.0.0.1:9"),
				Seq: 1, Ack: 1, Flags: flags,
			})
		}
	})
	assert.Empty(t, h.stop())
}

// Go servers listen with MPTCP by default (Go 1.24+). The TCP sockets the
// programs see are then kernel-made subflows, whose cookies differ from
// SO_COOKIE on the Go side, so records are matched by address here.
func TestMPTCPServer(t *testing.T) {
	for _, clientMPTCP := range []bool{false, true} {
		t.Run(fmt.Sprintf("client MPTCP %v", clientMPTCP), func(t *testing.T) {
			h := newHarness(t)
			h.start()
			var ln net.Listener
			var client net.Conn
			h.cg.Run(t, func() {
				lc := net.ListenConfig{}
				lc.SetMultipathTCP(true)
				var err error
				ln, err = lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
				require.NoError(t, err)
				d := net.Dialer{}
				d.SetMultipathTCP(clientMPTCP)
				client, err = d.Dial("tcp", ln.Addr().String())
				require.NoError(t, err)
			})
			server, err := ln.Accept()
			require.NoError(t, err)
			ln.Close()
			clientAddr, serverAddr := testnet.AddrPort(client.LocalAddr()), testnet.AddrPort(server.LocalAddr())
			require.NoError(t, client.Close())
			require.NoError(t, readEnd(t, server))
			require.NoError(t, server.Close())

			records := h.stop()
			require.Len(t, records, 2, "%+v", records)
			byDir := map[string]record{}
			for _, r := range records {
				r.Cookie = 0
				byDir[r.Direction] = r
			}
			want := record{Source: clientAddr.String(), Dest: serverAddr.String(), Reason: "fin", NetType: "ipv4",
				Netns: testnet.HostInode()}
			wantOut, wantIn := want, want
			wantOut.Direction, wantOut.EndBy = "outgoing", "local"
			wantOut.Local, wantOut.Peer = clientAddr.String(), serverAddr.String()
			wantIn.Direction, wantIn.EndBy = "incoming", "remote"
			wantIn.Local, wantIn.Peer = serverAddr.String(), clientAddr.String()
			assert.Equal(t, wantOut, byDir["outgoing"])
			assert.Equal(t, wantIn, byDir["incoming"])
		})
	}
}
