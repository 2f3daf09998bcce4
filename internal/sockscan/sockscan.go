//go:build linux

// Package sockscan tells the direction and the owner of the TCP sockets that
// were already open when the receiver started, whose handshake the kernel
// programs never saw. The kernel's sockets come from one BPF iterator over
// every process's open files (bpf.ScanSockets); the direction is decided by
// the rules of Classify from the evidence the kernel keeps, and is Unknown
// where that evidence does not decide. Records of those sockets are matched
// by socket cookie, or by addresses where the kernel gave no cookie.
package sockscan

import (
	"fmt"
	"net/netip"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// Direction of a socket's connection, from the local socket's view.
type Direction int

// Directions a scan tells apart.
const (
	Unknown Direction = iota
	Incoming
	Outgoing
)

func (d Direction) String() string {
	switch d {
	case Incoming:
		return "incoming"
	case Outgoing:
		return "outgoing"
	default:
		return "unknown"
	}
}

// Rule is the rule of Classify that decided a socket's direction.
type Rule int

// The rules, in the order Classify tries them (the numbers of docs/record.md).
const (
	RuleNone      Rule = iota // nothing decided: Unknown
	RuleConnect               // 1. the port's bind bucket was made by connect(): outgoing
	RuleBacklog               // 2. a listener's backlog was copied into it: incoming
	RuleListener              // 3. a listener holds its local address and port: incoming
	RulePeer                  // 4. the other end is local and decided by 1-3: the opposite
	RulePortRange             // 5. only one of the two ports is in the ephemeral range
	ruleCount
)

var ruleNames = [ruleCount]string{"none", "connect", "backlog", "listener", "peer", "port_range"}

func (r Rule) String() string {
	if r < 0 || r >= ruleCount {
		return fmt.Sprintf("rule(%d)", int(r))
	}
	return ruleNames[r]
}

// Socket is what the scan learned of one socket.
type Socket struct {
	Direction  Direction
	Rule       Rule   // what decided Direction; RuleNone for Unknown
	PID        int    // a process that holds it; 0: none found
	Executable string // base name of the process's executable
}

// Table holds the sockets of a scan until their records come.
type Table struct {
	byCookie map[uint64]Socket
	// Sockets without a cookie, by addresses, when no other scanned
	// socket has the same ones.
	byAddrs map[addrs]Socket
	// Rules counts the sockets each rule decided (RuleNone: Unknown).
	Rules [ruleCount]int
	// Features says what the kernel let the scan program use.
	Features bpf.ScanFeatures
}

type addrs struct{ local, remote netip.AddrPort }

// Len returns the number of sockets waiting for their record.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.byCookie) + len(t.byAddrs)
}

// Take returns the scanned socket of a record, by its cookie or, for
// sockets the scan found without one, by its local and remote address, and
// forgets it: each socket has one record. A nil Table has no sockets.
func (t *Table) Take(cookie uint64, local, remote netip.AddrPort) (Socket, bool) {
	if t == nil {
		return Socket{}, false
	}
	if s, ok := t.byCookie[cookie]; ok {
		delete(t.byCookie, cookie)
		return s, true
	}
	k := addrs{local, remote}
	if s, ok := t.byAddrs[k]; ok {
		delete(t.byAddrs, k)
		return s, true
	}
	return Socket{}, false
}

// Scan reads every TCP socket that a process holds and classifies them.
// self is the collector's process id: a socket it shares with another
// process is that process's. On error (a kernel without BPF iterators, or
// missing privileges) it returns an empty Table, with which every record of
// a socket open before start has direction unknown and no process.
func Scan(self int) (*Table, error) {
	socks, feat, err := bpf.ScanSockets()
	if err != nil {
		return &Table{Features: feat}, fmt.Errorf("scan sockets: %w", err)
	}
	t := Classify(socks, self)
	t.Features = feat
	return t, nil
}

// holder identifies one socket in the scan, which lists it once per process
// that holds it: its file's inode, and its addresses (for the subflow of an
// MPTCP socket, which is not the file's own socket). Not the cookie: the
// cgroup programs may give a socket its cookie between two of its holders.
type holder struct {
	inode         uint64
	local, remote netip.AddrPort
}

// bind is a listening address: an unspecified address is every address of
// its family (and, for IPv6 without IPV6_V6ONLY, of IPv4 too).
type bind struct {
	netns uint32
	addr  netip.Addr
	port  uint16
}

// conn is a connection as one end sees it, in one network namespace.
type conn struct {
	netns uint32
	addrs
}

// Classify decides the direction of each connected socket of socks (the
// listening ones are the listener table; others, bound but never connected,
// have no connection) by the first of these rules that decides:
//
//  1. The bind bucket of its port was made by connect() (an automatic
//     port, fastreuse -1): outgoing.
//  2. It carries a listener's backlog (sk_max_ack_backlog > 0), which the
//     kernel copies into every socket accepted from a listener: incoming.
//  3. A listener in its network namespace holds its local address and port
//     (an unspecified address holds every address of its family, an IPv6
//     one without IPV6_V6ONLY IPv4 ones too): incoming.
//  4. The other end of the connection is in the scan (the socket whose
//     local and remote addresses are this one's remote and local: in the
//     same network namespace, else the only one in any namespace, as for a
//     veth pair): the opposite of the other end's direction if rule 1, 2 or
//     3 decided it; unknown if not (both ports were then chosen by bind(),
//     and the port range below would tell nothing).
//  5. The ephemeral port range of its network namespace
//     (net.ipv4.ip_local_port_range): its local port inside and its remote
//     port outside: outgoing; the remote port inside and the local port
//     outside: incoming.
//
// Anything else is unknown. A socket that several processes hold is the
// first one's (in process id order), except that self, the collector, yields
// it to any other.
func Classify(socks []bpf.ScanSocket, self int) *Table {
	// One entry per socket.
	index := map[holder]int{}
	var uniq []bpf.ScanSocket
	for _, s := range socks {
		h := holder{s.Inode, s.Local, s.Remote}
		i, seen := index[h]
		if !seen {
			index[h] = len(uniq)
			uniq = append(uniq, s)
			continue
		}
		if uniq[i].Cookie == 0 {
			uniq[i].Cookie = s.Cookie
		}
		if int(uniq[i].PID) == self && int(s.PID) != self {
			uniq[i].PID, uniq[i].Executable = s.PID, s.Executable
		}
	}

	listening := map[bind]bool{} // value: IPV6_V6ONLY
	for _, s := range uniq {
		if s.State == bpf.StateListen {
			listening[bind{s.Netns, s.Local.Addr(), s.Local.Port()}] = s.IPv6Only
		}
	}
	listens := func(s *bpf.ScanSocket) bool {
		local, port := s.Local.Addr(), s.Local.Port()
		if _, ok := listening[bind{s.Netns, local, port}]; ok {
			return true
		}
		v6only, ok := listening[bind{s.Netns, netip.IPv6Unspecified(), port}]
		if ok && (local.Is6() || !v6only) {
			return true
		}
		_, ok = listening[bind{s.Netns, netip.IPv4Unspecified(), port}]
		return ok && local.Is4()
	}

	t := &Table{byCookie: map[uint64]Socket{}, byAddrs: map[addrs]Socket{}}
	out := make([]Socket, len(uniq))
	inNetns := map[conn]int{}     // connection -> socket
	anyNetns := map[addrs][]int{} // connection -> sockets in all namespaces
	connected := func(s *bpf.ScanSocket) bool { return s.State != bpf.StateListen && s.Remote.Port() != 0 }
	for i := range uniq {
		s := &uniq[i]
		if !connected(s) {
			continue
		}
		out[i] = Socket{PID: int(s.PID), Executable: s.Executable}
		out[i].Direction, out[i].Rule = ownEvidence(s, listens)
		a := addrs{s.Local, s.Remote}
		inNetns[conn{s.Netns, a}] = i
		anyNetns[a] = append(anyNetns[a], i)
	}
	peerOf := func(i int) (int, bool) {
		s := &uniq[i]
		back := addrs{s.Remote, s.Local}
		if j, ok := inNetns[conn{s.Netns, back}]; ok && j != i {
			return j, true
		}
		var found []int
		for _, j := range anyNetns[back] {
			if uniq[j].Netns != s.Netns {
				found = append(found, j)
			}
		}
		if len(found) == 1 {
			return found[0], true
		}
		return 0, false
	}
	for i := range uniq {
		s := &uniq[i]
		if !connected(s) {
			continue
		}
		sock := &out[i]
		if sock.Rule == RuleNone {
			if j, ok := peerOf(i); ok {
				if peer := out[j]; peer.Rule >= RuleConnect && peer.Rule <= RuleListener {
					sock.Direction, sock.Rule = opposite(peer.Direction), RulePeer
				}
			} else {
				sock.Direction, sock.Rule = portRange(s)
			}
		}
		t.Rules[sock.Rule]++
		if s.Cookie != 0 {
			t.byCookie[s.Cookie] = *sock
		} else if a := (addrs{s.Local, s.Remote}); len(anyNetns[a]) == 1 {
			t.byAddrs[a] = *sock
		}
	}
	return t
}

// ownEvidence applies rules 1 to 3, which need only the socket itself and
// the listener table.
func ownEvidence(s *bpf.ScanSocket, listens func(*bpf.ScanSocket) bool) (Direction, Rule) {
	switch {
	case s.BindBucket == bpf.BindByConnect:
		return Outgoing, RuleConnect
	case s.Backlog > 0:
		return Incoming, RuleBacklog
	case listens(s):
		return Incoming, RuleListener
	}
	return Unknown, RuleNone
}

// portRange applies rule 5.
func portRange(s *bpf.ScanSocket) (Direction, Rule) {
	r := s.EphemeralPorts
	local, remote := r.Contains(s.Local.Port()), r.Contains(s.Remote.Port())
	switch {
	case local && !remote:
		return Outgoing, RulePortRange
	case remote && !local:
		return Incoming, RulePortRange
	}
	return Unknown, RuleNone
}

func opposite(d Direction) Direction {
	switch d {
	case Incoming:
		return Outgoing
	case Outgoing:
		return Incoming
	}
	return Unknown
}
