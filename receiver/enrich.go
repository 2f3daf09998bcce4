//go:build linux

package receiver

import (
	"context"

	"go.uber.org/zap"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/bounded"
	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/containerid"
	"github.com/netflowtcpend/netflowtcpend/internal/dnscache"
	"github.com/netflowtcpend/netflowtcpend/internal/kubecache"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	"github.com/netflowtcpend/netflowtcpend/internal/sockscan"
)

// connectionEnd is a decoded connection-end record with what the receiver
// adds to it: what every sink takes.
type connectionEnd struct {
	event              *bpf.Event
	cgroup             cgroupInfo
	srcNames, dstNames []string // from the DNS cache (valid until the next end); empty when none or DNS is off
	// The peer in Kubernetes terms (k8sPeerOf); hasK8sPeer false when the
	// kubernetes: block is off or the cluster does not know the peer.
	k8sPeer    kubecache.Peer
	hasK8sPeer bool
	// From the socket's TLS ClientHello; zero when none.
	sni tlsName
}

type cgroupInfo struct {
	path      string // relative to the cgroup v2 root; "" when unknown
	container string // "" for none
}

// enricherSettings are what the enricher uses.
type enricherSettings struct {
	logger    *zap.Logger
	telemetry *metadata.TelemetryBuilder
	// The sockets open before start, until their record comes.
	preexisting *sockscan.Table
	// excludeSelf: the collector's own sockets, process selfPID as the
	// kernel counts it, yield no records.
	excludeSelf bool
	selfPID     int
	filters     filters
	cgroups     *cgroupv2.Paths
	dns         *dnscache.Cache // nil when DNS is off
	// dnsNetns: DNS records carry their network namespace
	// (bpf.Features.DNSNetns); else one cache serves all namespaces.
	dnsNetns bool
	// nat names the translations the kernel programs cannot see
	// (nat.conntrack); nil when off.
	nat *natLookup
	// k8s names peers from the API server; nil when the kubernetes: block
	// is off.
	k8s peerNamer
	// tls: the kernel copies ClientHellos (tls.enabled).
	tls bool
}

// enricher completes connection-end records: what the scan at start knew
// of sockets whose handshake the programs did not see, the filters, the
// cgroup path and container, the translation the node's connection
// tracking knows, and the DNS names of both sides. It also
// takes in what the kernel reports besides ends: DNS messages for the
// cache, new cgroups for the resolver.
type enricher struct {
	enricherSettings
	// The path and container of each cgroup id seen, so that a record
	// costs one map lookup instead of the shared resolver's lock and a
	// regexp. Only ids the resolver knew are here: an unknown one may be
	// learned or walked later. Cgroup ids are never reused (64-bit kernfs
	// ids), so an entry never goes stale.
	cgroupInfo bounded.Map[uint64, cgroupInfo]
	// Server names from TLS ClientHellos, until their socket's end; nil
	// when TLS is off.
	tlsNames *tlsNames
	// The buffers of connectionEnd.srcNames and dstNames (end).
	srcNames, dstNames []string
}

// maxCgroupInfo bounds enricher.cgroupInfo: a host may create millions of
// cgroups over time.
const maxCgroupInfo = 4096

func newEnricher(s enricherSettings) enricher {
	en := enricher{enricherSettings: s, cgroupInfo: bounded.NewMap[uint64, cgroupInfo](maxCgroupInfo)}
	if s.tls {
		en.tlsNames = newTLSNames()
	}
	return en
}

// end returns e with what the receiver adds to it; false when no record is
// to be made of it (filtered, or the collector's own).
func (en *enricher) end(e *bpf.Event) (connectionEnd, bool) {
	if e.Flags&bpf.FlagRetried != 0 {
		en.telemetry.NetflowtcpendRecordsRetried.Add(context.Background(), 1)
	}
	if e.StartNs == 0 && e.Direction == bpf.DirectionUnknown && !en.completePreexisting(e) {
		return connectionEnd{}, false // the collector's own, from before start
	}
	// Taken before the filters: a socket's name goes with its end.
	var sni tlsName
	if en.tlsNames != nil {
		sni, _ = en.tlsNames.take(e)
	}
	cg := en.cgroup(e.CgroupID)
	if !en.filters.keep(e, cg.path) {
		en.telemetry.NetflowtcpendRecordsFiltered.Add(context.Background(), 1)
		return connectionEnd{}, false
	}
	if en.nat != nil {
		en.nat.fill(e)
	}
	end := connectionEnd{event: e, cgroup: cg, sni: sni}
	if en.dns != nil {
		netns := e.Netns
		if !en.dnsNetns {
			netns = 0 // DNS records carry none: one cache for all namespaces
		}
		// Into buffers kept from record to record: the sinks copy the
		// names (strings) before the next record's lookup.
		en.srcNames = en.dns.AppendNames(en.srcNames[:0], netns, e.Source.Addr(), e.StartNs, e.TimeNs)
		en.dstNames = en.dns.AppendNames(en.dstNames[:0], netns, e.Destination.Addr(), e.StartNs, e.TimeNs)
		end.srcNames, end.dstNames = en.srcNames, en.dstNames
	}
	if en.k8s != nil {
		end.k8sPeer, end.hasK8sPeer = k8sPeerOf(en.k8s, e)
	}
	return end, true
}

// completePreexisting fills in what the scan at start learned of a socket
// whose handshake the programs did not see. It returns false for the
// collector's own sockets when those are excluded.
func (en *enricher) completePreexisting(e *bpf.Event) bool {
	local, remote := e.Source, e.Destination
	if e.EndBy != bpf.EndByLocal {
		local, remote = remote, local
	}
	s, ok := en.preexisting.Take(e.Cookie, local, remote)
	if !ok {
		return true
	}
	if en.excludeSelf && s.PID == en.selfPID {
		return false
	}
	switch s.Direction {
	case sockscan.Incoming:
		e.Direction = bpf.DirectionIncoming
	case sockscan.Outgoing:
		e.Direction = bpf.DirectionOutgoing
	}
	if e.PID == 0 && s.PID != 0 {
		e.PID, e.Executable = uint32(s.PID), s.Executable
	}
	return true
}

func (en *enricher) cgroup(id uint64) cgroupInfo {
	if info, ok := en.cgroupInfo.Get(id); ok {
		return info
	}
	path, ok := en.cgroups.Path(id)
	info := cgroupInfo{path: path, container: containerid.FromCgroupPath(path)}
	if !ok { // not cached: it may be learned or walked later
		en.telemetry.NetflowtcpendRecordsCgroupUnresolved.Add(context.Background(), 1)
		return info
	}
	en.cgroupInfo.Put(id, info)
	return info
}

// learnCgroup gives the resolver a cgroup that the kernel reported at its
// creation. Its record precedes those of its sockets in the ring buffer, so
// they find its path even if the cgroup is gone by the time they are read.
func (en *enricher) learnCgroup(c *bpf.CgroupCreated) {
	if c.Truncated {
		en.logger.Debug("A new cgroup's path is too long for its record; its records rely on walks of the cgroup tree",
			zap.Uint64("cgroup_id", c.ID), zap.Int("path_length", c.PathLen))
		return
	}
	if en.cgroups.Learn(c.ID, c.ParentID, c.Path) {
		en.telemetry.NetflowtcpendCgroupsLearned.Add(context.Background(), 1)
	}
}

// observeDNS gives the DNS cache a message that a watched socket sent or
// received.
func (en *enricher) observeDNS(m *bpf.DNSMessage) {
	if en.dns == nil {
		return
	}
	en.dns.Observe(dnscache.Message{
		TimeNs: m.TimeNs, Cookie: m.Cookie, Netns: m.Netns,
		Source: m.Source, Dest: m.Destination, Sent: m.Egress,
		TCP: m.TCP, Payload: m.Payload, Truncated: m.WireLen > len(m.Payload),
	})
}

// observeTLS takes a piece of a ClientHello for the server name of its
// socket.
func (en *enricher) observeTLS(p *bpf.TLSPiece) {
	if en.tlsNames != nil {
		en.tlsNames.observe(p)
	}
}
