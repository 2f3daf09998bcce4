//go:build linux

package sockscan

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

const (
	established = 1
	hostNS      = 4026531833
	otherNS     = 4026532000
)

var linuxPorts = bpf.PortRange{Low: 32768, High: 60999}

// sk builds a scanned socket; the inode and cookie are taken from the
// local port unless set later.
func sk(state uint8, local, remote string) bpf.ScanSocket {
	l, r := netip.MustParseAddrPort(local), netip.AddrPort{}
	if remote != "" {
		r = netip.MustParseAddrPort(remote)
	}
	return bpf.ScanSocket{
		Cookie: uint64(l.Port()), Inode: uint64(l.Port()), Netns: hostNS, PID: 100, Executable: "app",
		State: state, Local: l, Remote: r, BindBucket: bpf.BindByBind, EphemeralPorts: linuxPorts,
	}
}

func listener(local string, backlog uint32) bpf.ScanSocket {
	s := sk(bpf.StateListen, local, "")
	s.Cookie, s.Inode, s.Backlog = 1<<40|s.Cookie, 1<<40|s.Inode, backlog
	return s
}

func with(s bpf.ScanSocket, f func(*bpf.ScanSocket)) bpf.ScanSocket {
	f(&s)
	return s
}

func TestClassifyRules(t *testing.T) {
	connected := func(s *bpf.ScanSocket) { s.BindBucket = bpf.BindByConnect }
	accepted := func(s *bpf.ScanSocket) { s.Backlog = 4096 }
	for _, tt := range []struct {
		name  string
		socks []bpf.ScanSocket // the socket under test is the first
		dir   Direction
		rule  Rule
	}{
		{
			name:  "1: bind bucket made by connect",
			socks: []bpf.ScanSocket{with(sk(established, "10.0.0.1:40000", "93.184.216.34:443"), connected)},
			dir:   Outgoing, rule: RuleConnect,
		},
		{
			// An outgoing socket on the port of a listener elsewhere: rule
			// 1 comes first.
			name: "1 before 3",
			socks: []bpf.ScanSocket{
				with(sk(established, "10.0.0.1:40000", "93.184.216.34:443"), connected),
				listener("0.0.0.0:40000", 16),
			},
			dir: Outgoing, rule: RuleConnect,
		},
		{
			name:  "2: backlog copied from a listener, the listener closed",
			socks: []bpf.ScanSocket{with(sk(established, "10.0.0.1:8080", "10.0.0.9:51000"), accepted)},
			dir:   Incoming, rule: RuleBacklog,
		},
		{
			name:  "2: IPv6, the listener closed",
			socks: []bpf.ScanSocket{with(sk(established, "[2001:db8::1]:8080", "[2001:db8::9]:51000"), accepted)},
			dir:   Incoming, rule: RuleBacklog,
		},
		{
			name:  "3: listener on the address",
			socks: []bpf.ScanSocket{sk(established, "10.0.0.1:8080", "10.0.0.9:51000"), listener("10.0.0.1:8080", 0)},
			dir:   Incoming, rule: RuleListener,
		},
		{
			name:  "3: IPv4 wildcard listener",
			socks: []bpf.ScanSocket{sk(established, "10.0.0.1:8080", "10.0.0.9:51000"), listener("0.0.0.0:8080", 0)},
			dir:   Incoming, rule: RuleListener,
		},
		{
			// IPv4 on a dual-stack socket: the scan unmaps its addresses.
			name:  "3: dual-stack listener, IPv4 connection",
			socks: []bpf.ScanSocket{sk(established, "10.0.0.1:8080", "10.0.0.9:51000"), listener("[::]:8080", 0)},
			dir:   Incoming, rule: RuleListener,
		},
		{
			name:  "3: IPv6 wildcard listener",
			socks: []bpf.ScanSocket{sk(established, "[2001:db8::1]:8080", "[2001:db8::9]:51000"), listener("[::]:8080", 0)},
			dir:   Incoming, rule: RuleListener,
		},
		{
			name: "3 passes: IPV6_V6ONLY listener takes no IPv4",
			socks: []bpf.ScanSocket{
				sk(established, "10.0.0.1:8080", "10.0.0.9:9000"),
				with(listener("[::]:8080", 0), func(s *bpf.ScanSocket) { s.IPv6Only = true }),
			},
			dir: Unknown, rule: RuleNone,
		},
		{
			name:  "3 passes: IPv4 wildcard takes no IPv6",
			socks: []bpf.ScanSocket{sk(established, "[2001:db8::1]:8080", "[2001:db8::9]:9000"), listener("0.0.0.0:8080", 0)},
			dir:   Unknown, rule: RuleNone,
		},
		{
			name:  "3 passes: same port, other address",
			socks: []bpf.ScanSocket{sk(established, "10.0.0.2:8080", "10.0.0.9:9000"), listener("10.0.0.1:8080", 0)},
			dir:   Unknown, rule: RuleNone,
		},
		{
			name: "3 passes: listener in another network namespace",
			socks: []bpf.ScanSocket{
				sk(established, "10.0.0.1:8080", "10.0.0.9:9000"),
				with(listener("0.0.0.0:8080", 0), func(s *bpf.ScanSocket) { s.Netns = otherNS }),
			},
			dir: Unknown, rule: RuleNone,
		},
		{
			// listen(fd, 0), closed: the accepted socket has no evidence
			// of its own; its client's bind bucket decides.
			name: "4: local peer decided by rule 1",
			socks: []bpf.ScanSocket{
				sk(established, "127.0.0.1:8080", "127.0.0.1:45000"),
				with(sk(established, "127.0.0.1:45000", "127.0.0.1:8080"), connected),
			},
			dir: Incoming, rule: RulePeer,
		},
		{
			name: "4: peer in another network namespace (veth), IPv6",
			socks: []bpf.ScanSocket{
				sk(established, "[fd77::2]:8080", "[fd77::1]:45000"),
				with(sk(established, "[fd77::1]:45000", "[fd77::2]:8080"), func(s *bpf.ScanSocket) {
					connected(s)
					s.Netns = otherNS
				}),
			},
			dir: Incoming, rule: RulePeer,
		},
		{
			name: "4: peer decided by rule 2",
			socks: []bpf.ScanSocket{
				sk(established, "127.0.0.1:2000", "127.0.0.1:8080"), // an explicit bind
				with(sk(established, "127.0.0.1:8080", "127.0.0.1:2000"), accepted),
			},
			dir: Outgoing, rule: RulePeer,
		},
		{
			// Both ends were bound by bind(): their ports say nothing.
			name: "4: peer found, undecided: unknown, the port range is not asked",
			socks: []bpf.ScanSocket{
				sk(established, "127.0.0.1:2000", "127.0.0.1:45000"),
				sk(established, "127.0.0.1:45000", "127.0.0.1:2000"),
			},
			dir: Unknown, rule: RuleNone,
		},
		{
			name: "4 passes: the peer is not unique across namespaces",
			socks: []bpf.ScanSocket{
				sk(established, "10.0.0.2:9000", "10.0.0.1:9001"),
				with(sk(established, "10.0.0.1:9001", "10.0.0.2:9000"), func(s *bpf.ScanSocket) {
					connected(s)
					s.Netns = otherNS
				}),
				with(sk(established, "10.0.0.1:9001", "10.0.0.2:9000"), func(s *bpf.ScanSocket) {
					s.Netns, s.Inode, s.Cookie = otherNS+1, 77, 77
					accepted(s)
				}),
			},
			dir: Unknown, rule: RuleNone,
		},
		{
			// A client that bound its address with port 0: bind() took the
			// port from the range.
			name:  "5: local port inside the range, remote outside",
			socks: []bpf.ScanSocket{sk(established, "10.0.0.1:40001", "93.184.216.34:443")},
			dir:   Outgoing, rule: RulePortRange,
		},
		{
			name:  "5: remote port inside the range, local outside",
			socks: []bpf.ScanSocket{sk(established, "[2001:db8::1]:8080", "[2001:db8::9]:45000")},
			dir:   Incoming, rule: RulePortRange,
		},
		{
			name: "5: the socket's own namespace's range",
			socks: []bpf.ScanSocket{with(sk(established, "10.0.0.1:20001", "10.0.0.9:40000"), func(s *bpf.ScanSocket) {
				s.EphemeralPorts = bpf.PortRange{Low: 20000, High: 20999}
			})},
			dir: Outgoing, rule: RulePortRange,
		},
		{
			name:  "unknown: both ports inside the range",
			socks: []bpf.ScanSocket{sk(established, "10.0.0.1:40001", "10.0.0.9:45000")},
			dir:   Unknown, rule: RuleNone,
		},
		{
			name:  "unknown: both ports outside the range",
			socks: []bpf.ScanSocket{sk(established, "10.0.0.1:2000", "10.0.0.9:8080")},
			dir:   Unknown, rule: RuleNone,
		},
		{
			name: "unknown: no bind bucket, no range",
			socks: []bpf.ScanSocket{with(sk(7, "10.0.0.1:40001", "10.0.0.9:443"), func(s *bpf.ScanSocket) {
				s.BindBucket, s.EphemeralPorts = bpf.BindUnknown, bpf.PortRange{}
			})},
			dir: Unknown, rule: RuleNone,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			table := Classify(tt.socks, 1)
			first := tt.socks[0]
			got, ok := table.Take(first.Cookie, first.Local, first.Remote)
			require.True(t, ok)
			assert.Equal(t, Socket{tt.dir, tt.rule, 100, "app"}, got)
			// Each socket once.
			_, ok = table.Take(first.Cookie, first.Local, first.Remote)
			assert.False(t, ok)
		})
	}
}

func TestClassifyLeavesListenersOut(t *testing.T) {
	l := listener("0.0.0.0:80", 128)
	table := Classify([]bpf.ScanSocket{l}, 1)
	assert.Equal(t, 0, table.Len())
	_, ok := table.Take(l.Cookie, l.Local, l.Remote)
	assert.False(t, ok)
}

func TestClassifyCountsRules(t *testing.T) {
	table := Classify([]bpf.ScanSocket{
		with(sk(established, "10.0.0.1:40000", "10.0.0.9:443"), func(s *bpf.ScanSocket) { s.BindBucket = bpf.BindByConnect }),
		with(sk(established, "10.0.0.1:40001", "10.0.0.9:443"), func(s *bpf.ScanSocket) { s.BindBucket = bpf.BindByConnect }),
		with(sk(established, "10.0.0.1:8080", "10.0.0.9:50000"), func(s *bpf.ScanSocket) { s.Backlog = 5 }),
		sk(established, "10.0.0.1:2000", "10.0.0.9:2001"),
		listener("0.0.0.0:22", 5),
	}, 1)
	want := [ruleCount]int{}
	want[RuleConnect], want[RuleBacklog], want[RuleNone] = 2, 1, 1
	assert.Equal(t, want, table.Rules)
	assert.Equal(t, 4, table.Len())
}

// A socket that several processes hold (after fork, or passed over a unix
// socket) comes once per holder: the first holder owns it, but the
// collector yields it to any other process.
func TestClassifySharedSockets(t *testing.T) {
	const self = 50
	held := func(s bpf.ScanSocket, pid uint32, exe string) bpf.ScanSocket {
		s.PID, s.Executable = pid, exe
		return s
	}
	parentChild := sk(established, "10.0.0.1:40000", "10.0.0.9:443")
	selfFirst := sk(established, "10.0.0.1:40001", "10.0.0.9:443")
	selfOnly := sk(established, "10.0.0.1:40002", "10.0.0.9:443")
	table := Classify([]bpf.ScanSocket{
		held(parentChild, 10, "parent"), held(parentChild, 11, "child"),
		held(selfFirst, self, "otelcol"), held(selfFirst, 60, "other"),
		held(selfOnly, self, "otelcol"),
	}, self)
	for _, c := range []struct {
		s   bpf.ScanSocket
		pid int
		exe string
	}{{parentChild, 10, "parent"}, {selfFirst, 60, "other"}, {selfOnly, self, "otelcol"}} {
		got, ok := table.Take(c.s.Cookie, c.s.Local, c.s.Remote)
		require.True(t, ok)
		assert.Equal(t, c.pid, got.PID)
		assert.Equal(t, c.exe, got.Executable)
	}
	assert.Equal(t, 0, table.Len(), "one entry per socket")
}

// Where the kernel gave no cookie, a record is matched by its addresses,
// if no other scanned socket has the same ones (the records of kernels
// before 6.3 carry no network namespace).
func TestTakeByAddresses(t *testing.T) {
	noCookie := func(s bpf.ScanSocket) bpf.ScanSocket { s.Cookie = 0; return s }
	unique := noCookie(with(sk(established, "10.0.0.1:40000", "10.0.0.9:443"), func(s *bpf.ScanSocket) {
		s.BindBucket = bpf.BindByConnect
	}))
	twin := noCookie(sk(established, "10.0.0.1:40001", "10.0.0.9:443"))
	twinElsewhere := twin
	twinElsewhere.Netns, twinElsewhere.Inode = otherNS, 99
	table := Classify([]bpf.ScanSocket{unique, twin, twinElsewhere}, 1)

	_, ok := table.Take(12345, unique.Remote, unique.Local)
	assert.False(t, ok, "addresses the wrong way round")
	got, ok := table.Take(12345, unique.Local, unique.Remote)
	require.True(t, ok)
	assert.Equal(t, Outgoing, got.Direction)
	_, ok = table.Take(12345, twin.Local, twin.Remote)
	assert.False(t, ok, "two sockets with these addresses: neither is matched")
}

func TestRuleNames(t *testing.T) {
	var names []string
	for r := RuleNone; r < ruleCount; r++ {
		names = append(names, fmt.Sprint(r))
	}
	assert.Equal(t, []string{"none", "connect", "backlog", "listener", "peer", "port_range"}, names)
}

func TestNilTable(t *testing.T) {
	var table *Table
	assert.Equal(t, 0, table.Len())
	_, ok := table.Take(1, netip.AddrPort{}, netip.AddrPort{})
	assert.False(t, ok)
}

func TestClassifyLeavesUnconnectedSocketsOut(t *testing.T) {
	bound := sk(7, "10.0.0.1:8080", "") // bind() only, or a listener shut down
	bound.Backlog = 16
	table := Classify([]bpf.ScanSocket{bound}, 1)
	assert.Equal(t, 0, table.Len())
}
