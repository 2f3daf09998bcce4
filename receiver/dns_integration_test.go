//go:build linux

package receiver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// A real resolver, dnsmasq, answers a client in the monitored cgroup; the
// client then connects to the address it got. Everything runs in a network
// namespace of the test's own, so port 53 is free and addresses are ours.

var (
	dnsServer4 = netip.MustParseAddr("127.0.53.1")
	dnsServer6 = netip.MustParseAddr("fd53::1")
	forger     = netip.MustParseAddr("127.0.53.2")
	target4    = netip.MustParseAddr("10.99.0.7")
	target6    = netip.MustParseAddr("fd99::7")
	shortLived = netip.MustParseAddr("10.99.0.8")
	forgedAddr = netip.MustParseAddr("10.99.0.9")
	clientAddr = map[bool]netip.Addr{true: netip.MustParseAddr("127.0.0.1"), false: netip.IPv6Loopback()}
)

type dnsHarness struct {
	*harness
	ns *testnet.Netns
}

func newDNSHarness(t *testing.T) *dnsHarness {
	t.Helper()
	h := newHarness(t)
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		if testenv.InCI() {
			t.Fatal("dnsmasq is missing; make test installs it (Debian package dnsmasq-base)")
		}
		t.Skip("skipping: dnsmasq is not installed (make test installs dnsmasq-base)")
	}
	ns := testnet.NewNetns(t)
	for _, a := range []netip.Addr{dnsServer6, target4, target6, shortLived, forgedAddr} {
		ns.AddLoopbackAddr(t, a)
	}
	var log bytes.Buffer
	cmd := exec.Command(bin,
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--user=root", "--pid-file=", "--log-facility=-", "--log-queries",
		"--bind-interfaces", "--listen-address="+dnsServer4.String(), "--listen-address="+dnsServer6.String(),
		"--port=53", "--local-ttl=300",
		"--host-record=www.example.test,"+target4.String()+","+target6.String(),
		"--cname=alias.example.test,www.example.test",
		"--host-record=short.example.test,"+shortLived.String()+",2",
	)
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, ns.Start(cmd))
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", log.String())
		}
	})
	h.startWith(Config{
		RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond,
		DNS: DNSConfig{Enabled: true, MaxAddresses: 1000, MaxNames: 10, PayloadLimit: 4096},
	})
	d := &dnsHarness{harness: h, ns: ns}
	// dnsmasq is ready when it answers (from outside the monitored cgroup).
	require.Eventually(t, func() bool {
		_, err := d.resolve(false, "udp", dnsServer4, "www.example.test", dnsmessage.TypeA, 0)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "dnsmasq never answered: %s", &log)
	return d
}

// resolve asks server for name over network ("udp" or "tcp") from a socket
// in the namespace, in the monitored cgroup if monitored, and returns the
// addresses in the answer. id 0 picks one.
func (d *dnsHarness) resolve(monitored bool, network string, server netip.Addr, name string, qtype dnsmessage.Type, id uint16) ([]netip.Addr, error) {
	if id == 0 {
		id = uint16(time.Now().UnixNano())
	}
	q := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = q.StartQuestions()
	_ = q.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: qtype, Class: dnsmessage.ClassINET})
	query, err := q.Finish()
	if err != nil {
		return nil, err
	}
	var conn net.Conn
	dial := func() {
		err = d.ns.Do(func() (err error) {
			conn, err = net.DialTimeout(network, netip.AddrPortFrom(server, 53).String(), 2*time.Second)
			return err
		})
	}
	if monitored {
		d.cg.Run(d.t, dial)
	} else {
		dial()
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))

	var answer []byte
	if network == "tcp" {
		// Length prefix and message in one write, as resolvers do.
		framed := binary.BigEndian.AppendUint16(nil, uint16(len(query)))
		if _, err := conn.Write(append(framed, query...)); err != nil {
			return nil, err
		}
		var n uint16
		if err := binary.Read(conn, binary.BigEndian, &n); err != nil {
			return nil, err
		}
		answer = make([]byte, n)
		if _, err := io.ReadFull(conn, answer); err != nil {
			return nil, err
		}
	} else {
		if _, err := conn.Write(query); err != nil {
			return nil, err
		}
		answer = make([]byte, 4096)
		n, err := conn.Read(answer)
		if err != nil {
			return nil, err
		}
		answer = answer[:n]
	}
	var p dnsmessage.Parser
	if _, err := p.Start(answer); err != nil {
		return nil, err
	}
	_ = p.SkipAllQuestions()
	var addrs []netip.Addr
	for {
		h, err := p.AnswerHeader()
		if err != nil {
			break
		}
		switch h.Type {
		case dnsmessage.TypeA:
			r, _ := p.AResource()
			addrs = append(addrs, netip.AddrFrom4(r.A))
		case dnsmessage.TypeAAAA:
			r, _ := p.AAAAResource()
			addrs = append(addrs, netip.AddrFrom16(r.AAAA))
		default:
			_ = p.SkipAnswer()
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no address for %s", name)
	}
	return addrs, nil
}

// lookup resolves from the monitored cgroup and wants exactly one address.
func (d *dnsHarness) lookup(network string, server netip.Addr, name string, qtype dnsmessage.Type) netip.Addr {
	d.t.Helper()
	addrs, err := d.resolve(true, network, server, name, qtype, 0)
	require.NoError(d.t, err)
	require.Len(d.t, addrs, 1)
	return addrs[0]
}

// connection is one monitored client connection to addr; closing it waits
// until the server saw the end.
type connection struct {
	client *net.TCPConn
	server net.Conn
	port   uint16
}

func (d *dnsHarness) connect(addr netip.Addr) *connection {
	d.t.Helper()
	var ln *net.TCPListener
	require.NoError(d.t, d.ns.Do(func() (err error) {
		ln, err = testnet.Listen(netip.AddrPortFrom(addr, 0))
		return err
	}))
	defer ln.Close()
	c := &connection{port: testnet.AddrPort(ln.Addr()).Port()}
	d.cg.Run(d.t, func() {
		require.NoError(d.t, d.ns.Do(func() error {
			dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientAddr[addr.Is4()].AsSlice()}}
			dl.SetMultipathTCP(false)
			conn, err := dl.Dial("tcp", netip.AddrPortFrom(addr, c.port).String())
			if err == nil {
				c.client = conn.(*net.TCPConn)
			}
			return err
		}))
	})
	var err error
	c.server, err = ln.Accept()
	require.NoError(d.t, err)
	return c
}

func (c *connection) close(t *testing.T) {
	t.Helper()
	require.NoError(t, c.client.Close())
	require.NoError(t, readEnd(t, c.server))
	require.NoError(t, c.server.Close())
}

// domainsByPort returns the source and destination domains of each record,
// by destination port.
func domainsByPort(t *testing.T, h *harness) map[uint16][2][]string {
	t.Helper()
	out := map[uint16][2][]string{}
	h.eachRecord(func(_ pcommon.Resource, lr plog.LogRecord) {
		a := lr.Attributes()
		port, _ := a.Get(attrDestinationPort.String())
		src, _ := a.Get(attrSourceDomains.String())
		dst, _ := a.Get(attrDestinationDomains.String())
		out[uint16(port.Int())] = [2][]string{asStrings(src.Slice()), asStrings(dst.Slice())}
	})
	return out
}

func asStrings(s interface{ AsRaw() []any }) []string {
	out := []string{}
	for _, v := range s.AsRaw() {
		out = append(out, v.(string))
	}
	return out
}

func TestDomainsFromARealResolver(t *testing.T) {
	d := newDNSHarness(t)

	// A CNAME chain over UDP: the record names the queried alias first.
	require.Equal(t, target4, d.lookup("udp", dnsServer4, "alias.example.test", dnsmessage.TypeA))
	alias := d.connect(target4)
	alias.close(t)

	// AAAA over TCP, to the IPv6 server.
	require.Equal(t, target6, d.lookup("tcp", dnsServer6, "www.example.test", dnsmessage.TypeAAAA))
	v6 := d.connect(target6)
	v6.close(t)

	// The same address under a second chain: most recently answered first.
	require.Equal(t, target4, d.lookup("udp", dnsServer4, "www.example.test", dnsmessage.TypeA))
	both := d.connect(target4)
	both.close(t)

	// A over TCP to the IPv4 server.
	require.Equal(t, target4, d.lookup("tcp", dnsServer4, "alias.example.test", dnsmessage.TypeA))
	overTCP := d.connect(target4)
	overTCP.close(t)

	// AAAA over UDP, through the CNAME.
	require.Equal(t, target6, d.lookup("udp", dnsServer6, "alias.example.test", dnsmessage.TypeAAAA))
	v6UDP := d.connect(target6)
	v6UDP.close(t)

	d.stop()
	got := domainsByPort(t, d.harness)
	none := []string{}
	assert.Equal(t, [2][]string{none, {"alias.example.test", "www.example.test"}}, got[alias.port])
	assert.Equal(t, [2][]string{none, {"www.example.test"}}, got[v6.port])
	assert.Equal(t, [2][]string{none, {"www.example.test", "alias.example.test"}}, got[both.port])
	assert.Equal(t, [2][]string{none, {"alias.example.test", "www.example.test"}}, got[overTCP.port])
	assert.Equal(t, [2][]string{none, {"alias.example.test", "www.example.test"}}, got[v6UDP.port])
	assert.Zero(t, d.rcv.dns.Stats().Unmatched)
	assert.Zero(t, d.rcv.dns.Stats().ParseErrors)
}

func TestDomainsOutliveTheirTTLWhileTheConnectionIsOpen(t *testing.T) {
	d := newDNSHarness(t)
	require.Equal(t, shortLived, d.lookup("udp", dnsServer4, "short.example.test", dnsmessage.TypeA))
	long := d.connect(shortLived)
	time.Sleep(3 * time.Second) // the TTL is 2 s
	long.close(t)
	// Opened after the TTL ran out, with no new lookup: no name.
	late := d.connect(shortLived)
	late.close(t)

	d.stop()
	got := domainsByPort(t, d.harness)
	assert.Equal(t, []string{"short.example.test"}, got[long.port][1])
	assert.Equal(t, []string{}, got[late.port][1])
}

func TestForgedAnswersChangeNothing(t *testing.T) {
	d := newDNSHarness(t)

	// A monitored socket that is waiting for nothing receives an answer
	// from port 53, as a blind attacker would send it.
	var victim *net.UDPConn
	d.cg.Run(t, func() {
		require.NoError(t, d.ns.Do(func() (err error) {
			victim, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			return err
		}))
	})
	defer victim.Close()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 77, Response: true, Authoritative: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("evil.example.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	_ = b.StartAnswers()
	_ = b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("evil.example.test."), Class: dnsmessage.ClassINET, TTL: 3600},
		dnsmessage.AResource{A: forgedAddr.As4()})
	forged, err := b.Finish()
	require.NoError(t, err)
	require.NoError(t, d.ns.Do(func() error {
		from, err := net.ListenUDP("udp", &net.UDPAddr{IP: forger.AsSlice(), Port: 53})
		if err != nil {
			return err
		}
		defer from.Close()
		_, err = from.WriteTo(forged, victim.LocalAddr())
		return err
	}))
	buf := make([]byte, 512)
	_ = victim.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _, err = victim.ReadFrom(buf)
	require.NoError(t, err, "the forged answer reached the socket")

	c := d.connect(forgedAddr)
	c.close(t)
	d.stop()
	assert.Equal(t, []string{}, domainsByPort(t, d.harness)[c.port][1])
	assert.Equal(t, uint64(1), d.rcv.dns.Stats().Unmatched)
}
