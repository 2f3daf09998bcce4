package receiver

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

func TestFilterKeep(t *testing.T) {
	e := bpf.Event{
		Source:      netip.MustParseAddrPort("10.1.2.3:40000"),
		Destination: netip.MustParseAddrPort("93.184.216.34:443"),
		Direction:   bpf.DirectionOutgoing,
	}
	const cg = "/kubepods.slice/pod1/cri-containerd-abc.scope"
	prefix := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	for _, tt := range []struct {
		name string
		f    FilterSettings
		keep bool
	}{
		{"no filters", FilterSettings{}, true},
		{"include the destination port", FilterSettings{Include: Criteria{Ports: []uint16{443}}}, true},
		{"include the source port", FilterSettings{Include: Criteria{Ports: []uint16{40000}}}, true},
		{"include another port", FilterSettings{Include: Criteria{Ports: []uint16{80}}}, false},
		{"exclude the port", FilterSettings{Exclude: Criteria{Ports: []uint16{443}}}, false},
		{"include the source range", FilterSettings{Include: Criteria{Prefixes: prefix("10.0.0.0/8")}}, true},
		{"include another range", FilterSettings{Include: Criteria{Prefixes: prefix("192.168.0.0/16")}}, false},
		{"exclude the destination range", FilterSettings{Exclude: Criteria{Prefixes: prefix("93.184.216.0/24")}}, false},
		{"exclude an IPv6 range", FilterSettings{Exclude: Criteria{Prefixes: prefix("2001:db8::/32")}}, true},
		{"include outgoing", FilterSettings{Include: Criteria{Directions: []bpf.Direction{bpf.DirectionOutgoing}}}, true},
		{"include incoming", FilterSettings{Include: Criteria{Directions: []bpf.Direction{bpf.DirectionIncoming}}}, false},
		{"exclude outgoing", FilterSettings{Exclude: Criteria{Directions: []bpf.Direction{bpf.DirectionOutgoing}}}, false},
		{"include a parent cgroup", FilterSettings{Include: Criteria{Cgroups: []string{"/kubepods.slice"}}}, true},
		{"include a cgroup with a common prefix only", FilterSettings{Include: Criteria{Cgroups: []string{"/kubepods"}}}, false},
		{"exclude the cgroup itself", FilterSettings{Exclude: Criteria{Cgroups: []string{cg}}}, false},
		{"include the root", FilterSettings{Include: Criteria{Cgroups: []string{"/"}}}, true},
		{"every include list must match", FilterSettings{Include: Criteria{
			Ports: []uint16{443}, Directions: []bpf.Direction{bpf.DirectionIncoming}}}, false},
		{"an exclude wins over an include", FilterSettings{
			Include: Criteria{Ports: []uint16{443}}, Exclude: Criteria{Prefixes: prefix("10.1.2.3/32")}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.keep, tt.f.keep(&e, cg))
		})
	}
}

func TestFiltersOnRealConnections(t *testing.T) {
	loopback6 := transport{name: "loopback6", clientAddr: netip.IPv6Loopback(), serverAddr: netip.IPv6Loopback()}
	for _, tt := range []struct {
		name  string
		f     FilterSettings
		keep4 []string // sides of the IPv4 connection kept: client, server
		keep6 []string
	}{
		{"no filters", FilterSettings{}, []string{"client", "server"}, []string{"client", "server"}},
		{"exclude ::1", FilterSettings{Exclude: Criteria{Prefixes: []netip.Prefix{netip.MustParsePrefix("::1/128")}}},
			[]string{"client", "server"}, nil},
		{"include incoming", FilterSettings{Include: Criteria{Directions: []bpf.Direction{bpf.DirectionIncoming}}},
			[]string{"server"}, []string{"server"}},
		{"exclude self", FilterSettings{ExcludeSelf: true}, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			s := testSettings
			s.Filters = tt.f
			h.startWith(s)
			c4 := dial(t, loopback4, h, true, true)
			c6 := dial(t, loopback6, h, true, true)
			for _, c := range []*conn{c4, c6} {
				require.NoError(t, c.client.Close())
				require.NoError(t, readEnd(t, c.server))
				require.NoError(t, c.server.Close())
			}
			h.stop()
			got := h.attrsByCookie()
			sides := func(c *conn) []string {
				var out []string
				if got[c.clientCookie] != nil {
					out = append(out, "client")
				}
				if got[c.serverCookie] != nil {
					out = append(out, "server")
				}
				return out
			}
			assert.Equal(t, tt.keep4, sides(c4), "IPv4")
			assert.Equal(t, tt.keep6, sides(c6), "IPv6")
		})
	}
}

func TestIncludePortsAndExcludeCgroups(t *testing.T) {
	h := newHarness(t)
	web, batch := h.cg.Child(t, "web"), h.cg.Child(t, "batch")
	bin := helperBinary(t)
	// Two servers, in two child cgroups of the monitored one.
	webSrv := startHelper(t, bin, web, nil, "serve", "127.0.0.1:0")
	batchSrv := startHelper(t, bin, batch, nil, "serve", "127.0.0.1:0")
	webAddr, batchAddr := webSrv.listening(), batchSrv.listening()

	s := testSettings
	s.Filters = FilterSettings{
		Include: Criteria{Ports: []uint16{webAddr.Port(), batchAddr.Port()}},
		Exclude: Criteria{Cgroups: []string{batch.Path}},
	}
	h.startWith(s)
	webCli := startHelper(t, bin, web, nil, "connect", webAddr.String())
	batchCli := startHelper(t, bin, batch, nil, "connect", batchAddr.String())
	other := startHelper(t, bin, web, nil, "serve", "127.0.0.1:0") // a port not included
	otherCli := startHelper(t, bin, web, nil, "connect", other.listening().String())
	exchange(t, webSrv, webCli)
	exchange(t, batchSrv, batchCli)
	exchange(t, other, otherCli)
	h.stop()

	got := h.attrsByCookie()
	assert.Len(t, got, 2, "only the web connection, both sides")
	assert.NotNil(t, got[webCli.Cookie])
	assert.NotNil(t, got[webSrv.Cookie])
}
