//go:build linux

package receiver

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/netflowtcpend/netflowtcpend/internal/conntrack"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// Records behind real NAT: iptables and ip6tables rules in network
// namespaces the tests make (never in the host's), a real resolver
// (dnsmasq) answering a Service name with its ClusterIP, real sockets in
// the monitored cgroup, both close orders. Every address attribute must be
// the socket's own view (getsockname, getpeername), the translation must
// be named where this host made it, and the Service's name must be on the
// client's record.

var (
	serviceIP     = map[bool]netip.Addr{false: netip.MustParseAddr("10.96.0.10"), true: netip.MustParseAddr("fd96::10")}
	servicePrefix = map[bool]string{false: "10.96.0.0/16", true: "fd96::/64"}
	maskedIP      = map[bool]netip.Addr{false: netip.MustParseAddr("10.99.3.1"), true: netip.MustParseAddr("fd99:3::1")}
	iptablesFor   = map[bool]string{false: "iptables", true: "ip6tables"}
)

const (
	serviceName = "svc.example.test"
	servicePort = 80
)

// natCase is one family and one close order.
type natCase struct {
	v6, serverFirst bool
}

func (c natCase) String() string {
	return fmt.Sprintf("%s/%s", map[bool]string{false: "ipv4", true: "ipv6"}[c.v6],
		map[bool]string{false: "client-closes-first", true: "server-closes-first"}[c.serverFirst])
}

// natCases are both families in both close orders.
func natCases(t *testing.T) []natCase {
	t.Helper()
	testenv.RequireRoot(t)
	testnet.RequireIptables(t)
	var cases []natCase
	for _, v6 := range []bool{false, true} {
		for _, serverFirst := range []bool{false, true} {
			cases = append(cases, natCase{v6: v6, serverFirst: serverFirst})
		}
	}
	return cases
}

func familyAddr(ns *testnet.Netns, v6 bool) netip.Addr {
	if v6 {
		return ns.Addr6
	}
	return ns.Addr4
}

// natRun is one monitored connection through NAT and what came of it.
type natRun struct {
	client, server           record   // the two sockets' records
	clientPeerDomains        []string // names on the client record's peer side
	clientView, serverView   [2]netip.AddrPort
	listening, dialed        netip.AddrPort
	clientCookie, srvCookie  uint64
	clientNetns, serverNetns uint32
}

// natTest starts a receiver with DNS on, listens in serverNS, lets nat
// install the rules (it gets the listener's address and returns the
// address the client is to dial, a name it resolves or an address), then
// connects from clientNS (from clientBind if valid), closes in the case's
// order and returns the records.
type natTest struct {
	clientNS, serverNS *testnet.Netns
	clientBind         netip.Addr
	dnsRecords         []string
	name               string // resolved by the client before it dials, if not ""
	nat                func(listening netip.AddrPort) (dial netip.AddrPort)
	// conntrackIn, if not nil, stands in for the node's namespace whose
	// connection tracking the receiver asks (nat.conntrack on).
	conntrackIn *testnet.Netns
	// beforeStart: the connection is open before the receiver starts
	// (its handshake and DNS answer unseen).
	beforeStart bool
	// dualStack: the server listens on [::] and takes IPv4 connections
	// on an IPv6 socket.
	dualStack bool
}

func (nt natTest) run(t *testing.T, c natCase) natRun {
	t.Helper()
	h := newHarness(t)
	dnsLog := startDnsmasq(t, nt.clientNS, nt.dnsRecords...)
	cfg := Config{
		RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond,
		DNS: DNSConfig{Enabled: true, MaxAddresses: 1000, MaxNames: 10, PayloadLimit: 4096},
	}
	var configure func(*options)
	if nt.conntrackIn != nil {
		cfg.NAT.Conntrack = true
		ns := nt.conntrackIn
		configure = func(o *options) {
			o.openConntrack = func() (*conntrack.Conn, uint32, error) {
				var ct *conntrack.Conn
				err := ns.Do(func() (err error) { ct, err = conntrack.Open(); return err })
				return ct, ns.Inode(), err
			}
		}
	}
	start := func() { h.startWithSettings(cfg, receivertest.NewNopSettings(metadata.Type), configure) }
	if !nt.beforeStart {
		start()
	}
	d := &dnsHarness{harness: h, ns: nt.clientNS}
	require.Eventually(t, func() bool {
		_, err := d.resolve(false, "udp", dnsServer4, serviceName, dnsmessage.TypeA, 0)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "dnsmasq never answered: %s", dnsLog)

	var ln *net.TCPListener
	h.cg.Run(t, func() {
		require.NoError(t, nt.serverNS.Do(func() (err error) {
			if nt.dualStack {
				ln, err = testnet.ListenBacklog(netip.MustParseAddrPort("[::]:0"), 16, false)
			} else {
				ln, err = testnet.Listen(netip.AddrPortFrom(familyAddr(nt.serverNS, c.v6), 0))
			}
			return err
		}))
	})
	defer ln.Close()
	var r natRun
	r.listening = netip.AddrPortFrom(familyAddr(nt.serverNS, c.v6), testnet.AddrPort(ln.Addr()).Port())
	r.dialed = nt.nat(r.listening)
	if nt.name != "" && !nt.beforeStart {
		qtype := dnsmessage.TypeA
		if c.v6 {
			qtype = dnsmessage.TypeAAAA
		}
		require.Equal(t, r.dialed.Addr(), d.lookup("udp", dnsServer4, nt.name, qtype))
	}

	var client *net.TCPConn
	h.cg.Run(t, func() {
		require.NoError(t, nt.clientNS.Do(func() (err error) {
			if nt.clientBind.IsValid() {
				client, err = testnet.DialFrom(netip.AddrPortFrom(nt.clientBind, 0), r.dialed)
			} else {
				client, err = testnet.Dial(r.dialed)
			}
			return err
		}))
	})
	defer client.Close()
	server, err := ln.AcceptTCP()
	require.NoError(t, err)
	defer server.Close()
	r.clientView = [2]netip.AddrPort{testnet.AddrPort(client.LocalAddr()), testnet.AddrPort(client.RemoteAddr())}
	r.serverView = [2]netip.AddrPort{testnet.AddrPort(server.LocalAddr()), testnet.AddrPort(server.RemoteAddr())}
	r.clientCookie, err = testnet.Cookie(client)
	require.NoError(t, err)
	r.srvCookie, err = testnet.Cookie(server)
	require.NoError(t, err)
	r.clientNetns, r.serverNetns = nt.clientNS.Inode(), nt.serverNS.Inode()
	_, err = client.Write([]byte("ping"))
	require.NoError(t, err)
	readExactly(t, server, "ping")
	if nt.beforeStart {
		start()
	}

	first, second := client, server
	if c.serverFirst {
		first, second = server, client
	}
	require.NoError(t, first.Close())
	require.NoError(t, readEnd(t, second))
	require.NoError(t, second.Close())

	records := h.stop()
	for _, rec := range records {
		switch rec.Cookie {
		case r.clientCookie:
			r.client = rec
		case r.srvCookie:
			r.server = rec
		default:
			t.Errorf("unexpected record %+v", rec)
		}
	}
	h.eachRecord(func(_ pcommon.Resource, lr plog.LogRecord) {
		a := lr.Attributes()
		if cookie, _ := a.Get(attrSocketCookie.String()); uint64(cookie.Int()) != r.clientCookie {
			return
		}
		key := attrDestinationDomains.String()
		if by, _ := a.Get(attrEndBy.String()); by.Str() == "remote" {
			key = attrSourceDomains.String()
		}
		v, _ := a.Get(key)
		r.clientPeerDomains = asStrings(v.Slice())
	})
	return r
}

// want is a record as the socket sees its connection: local and peer its
// own view, source the side that ended it.
func want(cookie uint64, dir string, view [2]netip.AddrPort, localSent bool, netType string, netns uint32, localX, peerX string) record {
	rec := record{Cookie: cookie, Direction: dir, Local: view[0].String(), Peer: view[1].String(),
		LocalTranslated: localX, PeerTranslated: peerX, Reason: "fin", NetType: netType, Netns: netns,
		Source: view[0].String(), Dest: view[1].String(), EndBy: "local"}
	if !localSent {
		rec.Source, rec.Dest, rec.EndBy = rec.Dest, rec.Source, "remote"
	}
	return rec
}

func netTypeOf(v6 bool) string {
	if v6 {
		return "ipv6"
	}
	return "ipv4"
}

// serviceDNAT makes ns's chain (OUTPUT where ns holds the client,
// PREROUTING where it routes the client's packets) send the Service's
// address and port to to, as kube-proxy does, and returns the Service.
func serviceDNAT(t *testing.T, ns *testnet.Netns, v6 bool, chain string, port uint16, to netip.AddrPort) netip.AddrPort {
	t.Helper()
	svc := netip.AddrPortFrom(serviceIP[v6], port)
	ns.Run(t, iptablesFor[v6], "-t", "nat", "-A", chain, "-d", svc.Addr().String(), "-p", "tcp",
		"--dport", fmt.Sprint(port), "-j", "DNAT", "--to-destination", to.String())
	return svc
}

var serviceRecord = "--host-record=" + serviceName + "," + serviceIP[false].String() + "," + serviceIP[true].String()

// serviceFromItsOwnNamespace: the client's namespace DNATs the Service (a
// node process reaching a Service).
func serviceFromItsOwnNamespace(t *testing.T, v6 bool) natTest {
	t.Helper()
	client, server := testnet.NewVethPair(t)
	client.Run(t, "ip", "route", "add", servicePrefix[v6], "dev", "nft0")
	return natTest{
		clientNS: client, serverNS: server, name: serviceName, dnsRecords: []string{serviceRecord},
		nat: func(listening netip.AddrPort) netip.AddrPort {
			return serviceDNAT(t, client, v6, "OUTPUT", servicePort, listening)
		},
	}
}

// podThroughNode: the client (a pod) routes the Service's range through the
// server's namespace (a node), which DNATs it to the server and whose
// connection tracking the receiver asks.
func podThroughNode(t *testing.T, v6 bool) natTest {
	t.Helper()
	pod, node := testnet.NewVethPair(t)
	pod.Run(t, "ip", "route", "add", servicePrefix[v6], "via", familyAddr(node, v6).String())
	return natTest{
		clientNS: pod, serverNS: node, name: serviceName, conntrackIn: node, dnsRecords: []string{serviceRecord},
		nat: func(listening netip.AddrPort) netip.AddrPort {
			return serviceDNAT(t, node, v6, "PREROUTING", servicePort, listening)
		},
	}
}

// assertServiceRecords checks the two records of a connection to the
// Service: the client's names the Service as its peer and the backend as
// the translated one; the server's names serverLocalX as its translated
// local side ("" for none).
func assertServiceRecords(t *testing.T, r natRun, c natCase, serverLocalX string, names []string) {
	t.Helper()
	require.Equal(t, r.dialed, r.clientView[1], "getpeername gives the Service")
	assert.Equal(t, want(r.clientCookie, "outgoing", r.clientView, !c.serverFirst, netTypeOf(c.v6), r.clientNetns,
		"", r.listening.String()), r.client)
	assert.Equal(t, want(r.srvCookie, "incoming", r.serverView, c.serverFirst, netTypeOf(c.v6), r.serverNetns,
		serverLocalX, ""), r.server)
	if names != nil {
		assert.Equal(t, names, r.clientPeerDomains)
	}
}

// A node process reaches a Service: the DNAT (kube-proxy's, here one
// iptables rule in nat OUTPUT) is in the client's own namespace. The
// client's record names the Service as its peer, with its DNS name, and the
// backend as the translated peer; the server saw no translation.
func TestNATServiceFromItsOwnNamespace(t *testing.T) {
	for _, c := range natCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			r := serviceFromItsOwnNamespace(t, c.v6).run(t, c)
			assertServiceRecords(t, r, c, "", []string{serviceName})
		})
	}
}

// A pod reaches a Service: the pod routes through the node, whose
// PREROUTING DNAT sends the ClusterIP to a backend (here a server on the
// node). The pod's hooks never see the backend: its record names the
// ClusterIP, with the Service's name, and the backend from the node's
// connection tracking. The server's record names the ClusterIP it was
// reached through, from its own packets when it closes first and from the
// node's connection tracking when the client does.
func TestNATPodToServiceThroughTheNode(t *testing.T) {
	for _, c := range natCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			r := podThroughNode(t, c.v6).run(t, c)
			assertServiceRecords(t, r, c, r.dialed.String(), []string{serviceName})
		})
	}
}

// The client's namespace masquerades what leaves it (SNAT, as a node does
// for its pods' traffic to the outside): the client's record names its own
// address and the address the server saw as its translated local side.
func TestNATMasquerade(t *testing.T) {
	for _, c := range natCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			client, server := testnet.NewVethPair(t)
			client.AddLoopbackAddr(t, maskedIP[c.v6])
			nt := natTest{
				clientNS: client, serverNS: server, clientBind: maskedIP[c.v6], name: "server.example.test",
				dnsRecords: []string{"--host-record=server.example.test," + server.Addr4.String() + "," + server.Addr6.String(),
					"--host-record=" + serviceName + "," + serviceIP[false].String()},
				nat: func(listening netip.AddrPort) netip.AddrPort {
					client.Run(t, iptablesFor[c.v6], "-t", "nat", "-A", "POSTROUTING", "-o", "nft0", "-p", "tcp", "-j", "MASQUERADE")
					return listening
				},
			}
			r := nt.run(t, c)
			require.Equal(t, maskedIP[c.v6], r.clientView[0].Addr())
			require.Equal(t, familyAddr(client, c.v6), r.serverView[1].Addr(), "the server sees the masqueraded address")
			assert.Equal(t, want(r.clientCookie, "outgoing", r.clientView, !c.serverFirst, netTypeOf(c.v6), r.clientNetns,
				r.serverView[1].String(), ""), r.client)
			assert.Equal(t, want(r.srvCookie, "incoming", r.serverView, c.serverFirst, netTypeOf(c.v6), r.serverNetns,
				"", ""), r.server)
			assert.Equal(t, []string{"server.example.test"}, r.clientPeerDomains)
		})
	}
}

// A server on a dual-stack socket ([::]) takes the pod's IPv4 connection
// through the node's DNAT: its record is IPv4, in its own view, with the
// ClusterIP it was reached through.
func TestNATPodToDualStackServer(t *testing.T) {
	testenv.RequireRoot(t)
	testnet.RequireIptables(t)
	for _, serverFirst := range []bool{false, true} {
		c := natCase{serverFirst: serverFirst}
		t.Run(c.String(), func(t *testing.T) {
			nt := podThroughNode(t, false)
			nt.dualStack = true
			r := nt.run(t, c)
			assertServiceRecords(t, r, c, r.dialed.String(), []string{serviceName})
		})
	}
}

// A connection through a Service's DNAT open before the receiver starts:
// the socket's own view all the same, the translation from the end that
// leaves the client, or from the connection tracking (here the client's
// namespace stands in for the node's) when the end comes in. Seen from
// the server, the client reached it as the Service. The DNS answer came
// before start: no name.
func TestNATConnectionOpenedBeforeStart(t *testing.T) {
	for _, c := range natCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			nt := serviceFromItsOwnNamespace(t, c.v6)
			nt.beforeStart, nt.conntrackIn = true, nt.clientNS
			r := nt.run(t, c)
			assertServiceRecords(t, r, c, r.dialed.String(), nil)
		})
	}
}

// Ends without a FIN behind a Service's DNAT in the client's namespace: an
// abortive close (RST), a refused connect (the backend's port is closed)
// and a connect timeout (the backend never answers). The client's record
// is in its own view, with the backend as the translated peer, known from
// the SYN.
func TestNATEndsWithoutFIN(t *testing.T) {
	testenv.RequireRoot(t)
	testnet.RequireIptables(t)
	for _, v6 := range []bool{false, true} {
		t.Run(netTypeOf(v6), func(t *testing.T) {
			h := newHarness(t)
			client, server := testnet.NewVethPair(t)
			client.Run(t, "ip", "route", "add", servicePrefix[v6], "dev", "nft0")
			dnat := func(port uint16, to netip.AddrPort) netip.AddrPort {
				return serviceDNAT(t, client, v6, "OUTPUT", port, to)
			}
			h.start()

			// Abortive close: SO_LINGER 0 sends a RST.
			var ln *net.TCPListener
			require.NoError(t, server.Do(func() (err error) {
				ln, err = testnet.Listen(netip.AddrPortFrom(familyAddr(server, v6), 0))
				return err
			}))
			defer ln.Close()
			backend := testnet.AddrPort(ln.Addr())
			var abort *net.TCPConn
			h.cg.Run(t, func() {
				require.NoError(t, client.Do(func() (err error) { abort, err = testnet.Dial(dnat(81, backend)); return err }))
			})
			accepted, err := ln.AcceptTCP()
			require.NoError(t, err)
			defer accepted.Close()
			abortCookie, err := testnet.Cookie(abort)
			require.NoError(t, err)
			abortView := [2]netip.AddrPort{testnet.AddrPort(abort.LocalAddr()), testnet.AddrPort(abort.RemoteAddr())}
			require.NoError(t, abort.SetLinger(0))
			require.NoError(t, abort.Close())
			requireReset(t, accepted)

			// Refused: the backend's port is closed.
			closed := netip.AddrPortFrom(familyAddr(server, v6), freePort(t, server, familyAddr(server, v6)))
			refusedSvc := dnat(82, closed)
			var refusedLocal netip.AddrPort
			var refusedCookie uint64
			h.cg.Run(t, func() {
				require.NoError(t, client.Do(func() (err error) {
					refusedLocal, refusedCookie, err = connectRefused(familyAddr(client, v6), refusedSvc)
					return err
				}))
			})

			records := h.stop()
			netns := client.Inode()
			assert.Contains(t, records, record{Cookie: abortCookie, Direction: "outgoing",
				Source: abortView[0].String(), Dest: abortView[1].String(), Local: abortView[0].String(), Peer: abortView[1].String(),
				PeerTranslated: backend.String(), EndBy: "local", Reason: "rst", NetType: netTypeOf(v6), Netns: netns})
			assert.Contains(t, records, record{Cookie: refusedCookie, Direction: "outgoing",
				Source: refusedSvc.String(), Dest: refusedLocal.String(), Local: refusedLocal.String(), Peer: refusedSvc.String(),
				PeerTranslated: closed.String(), EndBy: "remote", Reason: "rst", NetType: netTypeOf(v6), Netns: netns})
		})
	}
	t.Run("timeout", func(t *testing.T) {
		h := newHarness(t)
		client, _ := testnet.NewVethPair(t)
		nobody := netip.AddrPortFrom(client.Unanswered(t), 80)
		client.Run(t, "ip", "route", "add", servicePrefix[false], "dev", "nft0")
		svc := serviceDNAT(t, client, false, "OUTPUT", 83, nobody)
		h.start()
		local := netip.AddrPortFrom(client.Addr4, freePort(t, client, client.Addr4))
		var cookie uint64
		h.cg.Run(t, func() {
			require.NoError(t, client.Do(func() (err error) { cookie, err = connectTimesOut(local, svc); return err }))
		})
		got, ok := timedOutRecord(t, h, cookie)
		if !ok {
			return
		}
		assert.Equal(t, local.Addr().String(), got[attrLocalAddress.String()])
		assert.Equal(t, int64(local.Port()), got[attrLocalPort.String()])
		assert.Equal(t, svc.Addr().String(), got[attrPeerAddress.String()])
		assert.Equal(t, int64(svc.Port()), got[attrPeerPort.String()])
		assert.Equal(t, svc.Addr().String(), got[attrServerAddress.String()])
		assert.Equal(t, nobody.Addr().String(), got[attrPeerTranslatedAddress.String()])
		assert.Equal(t, int64(nobody.Port()), got[attrPeerTranslatedPort.String()])
		assert.NotContains(t, got, attrLocalTranslatedAddress.String())
	})
}

// freePort returns a port that nobody listens on at addr in ns (nil: this
// goroutine's namespace).
func freePort(t *testing.T, ns *testnet.Netns, addr netip.Addr) uint16 {
	t.Helper()
	var port uint16
	free := func() error {
		l, err := testnet.Listen(netip.AddrPortFrom(addr, 0))
		if err != nil {
			return err
		}
		port = testnet.AddrPort(l.Addr()).Port()
		return l.Close()
	}
	if ns == nil {
		require.NoError(t, free())
	} else {
		require.NoError(t, ns.Do(free))
	}
	return port
}
