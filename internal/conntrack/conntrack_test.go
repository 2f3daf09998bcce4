//go:build linux

package conntrack

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

func TestTranslated(t *testing.T) {
	client := netip.MustParseAddrPort("10.0.0.1:40000")
	service := netip.MustParseAddrPort("10.96.0.10:80")
	backend := netip.MustParseAddrPort("10.1.0.7:8080")
	node := netip.MustParseAddrPort("192.0.2.1:40001")
	// DNAT of a Service and SNAT of the client on the way.
	f := Flow{Orig: Tuple{client, service}, Reply: Tuple{backend, node}}

	got, ok := f.Translated(Tuple{client, service})
	require.True(t, ok)
	assert.Equal(t, Tuple{Src: node, Dst: backend}, got, "the client's packets leave as")
	got, ok = f.Translated(Tuple{backend, node})
	require.True(t, ok)
	assert.Equal(t, Tuple{Src: service, Dst: client}, got, "the backend's packets leave as")
	_, ok = f.Translated(Tuple{client, backend})
	assert.False(t, ok, "neither direction")
}

func TestGetRejectsMixedFamilies(t *testing.T) {
	c := &Conn{fd: -1}
	_, err := c.Get(Tuple{netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("[fd00::1]:2")})
	assert.ErrorContains(t, err, "not of one address family")
}

// natNamespace makes a namespace whose nat OUTPUT table sends a "Service"
// address to a listener on a loopback address, IPv4 and IPv6, and returns
// a connection through it and the listener's address.
func natNamespace(t testing.TB, v6 bool) (*testnet.Netns, *net.TCPConn, netip.AddrPort, netip.AddrPort) {
	t.Helper()
	testenv.RequireRoot(t)
	testnet.RequireIptables(t)
	ns := testnet.NewNetns(t)
	service, backend, route, iptables := netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("10.99.0.2"), "10.96.0.0/16", "iptables"
	if v6 {
		service, backend, route, iptables = netip.MustParseAddr("fd96::10"), netip.MustParseAddr("fd99::2"), "fd96::/64", "ip6tables"
	}
	ns.AddLoopbackAddr(t, backend)
	ns.Run(t, "ip", "route", "add", route, "dev", "lo")
	var ln *net.TCPListener
	require.NoError(t, ns.Do(func() (err error) {
		ln, err = testnet.Listen(netip.AddrPortFrom(backend, 0))
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	listening := testnet.AddrPort(ln.Addr())
	ns.Run(t, iptables, "-t", "nat", "-A", "OUTPUT", "-d", service.String(), "-p", "tcp", "--dport", "80",
		"-j", "DNAT", "--to-destination", listening.String())
	var c *net.TCPConn
	require.NoError(t, ns.Do(func() (err error) {
		c, err = testnet.Dial(netip.AddrPortFrom(service, 80))
		return err
	}))
	t.Cleanup(func() { c.Close() })
	return ns, c, netip.AddrPortFrom(service, 80), listening
}

func TestGetARealDNAT(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(t *testing.T) {
			ns, c, service, backend := natNamespace(t, v6)
			local := testnet.AddrPort(c.LocalAddr())
			require.Equal(t, service, testnet.AddrPort(c.RemoteAddr()), "the socket's own view")
			var ct *Conn
			require.NoError(t, ns.Do(func() (err error) { ct, err = Open(); return err }))
			defer ct.Close()

			// By the client socket's tuple: the original direction.
			f, err := ct.Get(Tuple{Src: local, Dst: service})
			require.NoError(t, err)
			assert.Equal(t, Flow{Orig: Tuple{local, service}, Reply: Tuple{backend, local}}, f)
			xlat, ok := f.Translated(Tuple{Src: local, Dst: service})
			require.True(t, ok)
			assert.Equal(t, Tuple{Src: local, Dst: backend}, xlat)

			// By the accepted socket's tuple: the reply direction.
			f2, err := ct.Get(Tuple{Src: backend, Dst: local})
			require.NoError(t, err)
			assert.Equal(t, f, f2)

			// A tuple nobody tracks.
			_, err = ct.Get(Tuple{Src: local, Dst: netip.AddrPortFrom(service.Addr(), 81)})
			assert.ErrorIs(t, err, ErrNotFound)
		})
	}
}

// BenchmarkGet is the cost of naming one record's translation: one request
// and its answer, found or not.
func BenchmarkGet(b *testing.B) {
	for _, found := range []bool{true, false} {
		b.Run(map[bool]string{true: "found", false: "not-found"}[found], func(b *testing.B) {
			ns, c, service, _ := natNamespace(b, false)
			tuple := Tuple{Src: testnet.AddrPort(c.LocalAddr()), Dst: service}
			if !found {
				tuple.Dst = netip.AddrPortFrom(service.Addr(), 81)
			}
			var ct *Conn
			require.NoError(b, ns.Do(func() (err error) { ct, err = Open(); return err }))
			defer ct.Close()
			b.ReportAllocs()
			for b.Loop() {
				_, err := ct.Get(tuple)
				if found && err != nil || !found && !errors.Is(err, ErrNotFound) {
					b.Fatal(err)
				}
			}
		})
	}
}
