//go:build linux

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
	// The record's cgroup as the resolver gives it: relative to the root.
	const root, cg = "/sys/fs/cgroup", "/kubepods.slice/pod1/cri-containerd-abc.scope"
	prefix := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	for _, tt := range []struct {
		name string
		f    FiltersConfig
		keep bool
	}{
		{"no filters", FiltersConfig{}, true},
		{"include the destination port", FiltersConfig{Include: FilterConfig{Ports: []int{443}}}, true},
		{"include the source port", FiltersConfig{Include: FilterConfig{Ports: []int{40000}}}, true},
		{"include another port", FiltersConfig{Include: FilterConfig{Ports: []int{80}}}, false},
		{"exclude the port", FiltersConfig{Exclude: FilterConfig{Ports: []int{443}}}, false},
		{"include the source range", FiltersConfig{Include: FilterConfig{CIDRs: prefix("10.0.0.0/8")}}, true},
		{"include another range", FiltersConfig{Include: FilterConfig{CIDRs: prefix("192.168.0.0/16")}}, false},
		{"exclude the destination range", FiltersConfig{Exclude: FilterConfig{CIDRs: prefix("93.184.216.0/24")}}, false},
		{"exclude an IPv6 range", FiltersConfig{Exclude: FilterConfig{CIDRs: prefix("2001:db8::/32")}}, true},
		{"include outgoing", FiltersConfig{Include: FilterConfig{Directions: []bpf.Direction{bpf.DirectionOutgoing}}}, true},
		{"include incoming", FiltersConfig{Include: FilterConfig{Directions: []bpf.Direction{bpf.DirectionIncoming}}}, false},
		{"exclude outgoing", FiltersConfig{Exclude: FilterConfig{Directions: []bpf.Direction{bpf.DirectionOutgoing}}}, false},
		{"include a parent cgroup", FiltersConfig{Include: FilterConfig{Cgroups: []string{root + "/kubepods.slice"}}}, true},
		{"include a cgroup with a common prefix only", FiltersConfig{Include: FilterConfig{Cgroups: []string{root + "/kubepods"}}}, false},
		{"exclude the cgroup itself", FiltersConfig{Exclude: FilterConfig{Cgroups: []string{root + cg}}}, false},
		{"include the root", FiltersConfig{Include: FilterConfig{Cgroups: []string{root}}}, true},
		{"every include list must match", FiltersConfig{Include: FilterConfig{
			Ports: []int{443}, Directions: []bpf.Direction{bpf.DirectionIncoming}}}, false},
		{"an exclude wins over an include", FiltersConfig{
			Include: FilterConfig{Ports: []int{443}}, Exclude: FilterConfig{CIDRs: prefix("10.1.2.3/32")}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFilters(tt.f, root)
			assert.Equal(t, tt.keep, f.keep(&e, cg))
		})
	}
}

func TestFiltersOnRealConnections(t *testing.T) {
	loopback6 := transport{name: "loopback6", clientAddr: netip.IPv6Loopback(), serverAddr: netip.IPv6Loopback()}
	for _, tt := range []struct {
		name  string
		f     FiltersConfig
		keep4 []string // sides of the IPv4 connection kept: client, server
		keep6 []string
	}{
		{"no filters", FiltersConfig{}, []string{"client", "server"}, []string{"client", "server"}},
		{"exclude ::1", FiltersConfig{Exclude: FilterConfig{CIDRs: []netip.Prefix{netip.MustParsePrefix("::1/128")}}},
			[]string{"client", "server"}, nil},
		{"include incoming", FiltersConfig{Include: FilterConfig{Directions: []bpf.Direction{bpf.DirectionIncoming}}},
			[]string{"server"}, []string{"server"}},
		{"exclude self", FiltersConfig{ExcludeSelf: true}, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			s := testConfig
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
	webAddr, batchAddr := webSrv.Listening(), batchSrv.Listening()

	s := testConfig
	s.Filters = FiltersConfig{
		Include: FilterConfig{Ports: []int{int(webAddr.Port()), int(batchAddr.Port())}},
		Exclude: FilterConfig{Cgroups: []string{batch.Path}},
	}
	h.startWith(s)
	webCli := startHelper(t, bin, web, nil, "connect", webAddr.String())
	batchCli := startHelper(t, bin, batch, nil, "connect", batchAddr.String())
	other := startHelper(t, bin, web, nil, "serve", "127.0.0.1:0") // a port not included
	otherCli := startHelper(t, bin, web, nil, "connect", other.Listening().String())
	exchange(t, webSrv, webCli)
	exchange(t, batchSrv, batchCli)
	exchange(t, other, otherCli)
	h.stop()

	got := h.attrsByCookie()
	assert.Len(t, got, 2, "only the web connection, both sides")
	assert.NotNil(t, got[webCli.Cookie])
	assert.NotNil(t, got[webSrv.Cookie])
}
