//go:build linux

package receiver

import (
	"net/netip"
	"time"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/xpdata"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/bounded"
	"github.com/netflowtcpend/netflowtcpend/internal/kubecache"
)

// EventName is the LogRecord EventName of every record.
const EventName = "netflow.tcp.end"

// converter turns events into log records. It keeps what it can reuse from
// record to record; it is not safe for concurrent use.
type converter struct {
	clock    clock
	attrs    attributeSet // what records carry
	capacity int          // attrs.count(): the most attributes of a record
	// Bodies are carved from here (summary).
	bodies []byte
	// Attributes are built here, then moved into the record.
	attrBuilder xpdata.MapBuilder
	// The text of recently seen addresses: servers and clients repeat.
	addrText bounded.Map[netip.Addr, string]
	// The names of the next record's peer in Kubernetes terms; nil for
	// none. The logs sink sets it before each append.
	k8sPeer *kubecache.Peer
}

// maxAddrText bounds the address texts kept.
const maxAddrText = 4096

// init prepares a converter of records that carry attrs.
func (c *converter) init(attrs attributeSet) {
	c.attrs, c.capacity = attrs, attrs.count()
	c.addrText = bounded.NewMap[netip.Addr, string](maxAddrText)
	c.clock.sync()
}

func (c *converter) text(a netip.Addr) string {
	if s, ok := c.addrText.Get(a); ok {
		return s
	}
	s := a.String()
	c.addrText.Put(a, s)
	return s
}

// append adds the log record for e to lrs, with the names the DNS cache
// knows for each side and the server name of its TLS ClientHello, if any.
func (c *converter) append(lrs plog.LogRecordSlice, e *bpf.Event, srcNames, dstNames []string, sni tlsName,
	observed pcommon.Timestamp,
) {
	clk := &c.clock
	lr := lrs.AppendEmpty()
	lr.SetEventName(EventName)
	lr.SetTimestamp(clk.wall(e.TimeNs))
	lr.SetObservedTimestamp(observed)
	if e.EndReason == bpf.EndFIN || e.EndReason == bpf.EndClosed {
		lr.SetSeverityNumber(plog.SeverityNumberInfo)
		lr.SetSeverityText("INFO")
	} else {
		lr.SetSeverityNumber(plog.SeverityNumberWarn)
		lr.SetSeverityText("WARN")
	}
	lr.Body().SetStr(c.summary(e))
	src, dst := c.text(e.Source.Addr()), c.text(e.Destination.Addr())
	set := c.attrs

	// The attributes are appended without pcommon.Map's search for an
	// existing key before each one (quadratic in the attribute count):
	// every key below is distinct. The builder hands them to the record at
	// the end, without a copy.
	a := &c.attrBuilder
	a.EnsureCapacity(c.capacity)
	// The event's own fields, always.
	a.AppendEmpty(attrDirection.String()).SetStr(e.Direction.String())
	a.AppendEmpty(attrSourceAddress.String()).SetStr(src)
	a.AppendEmpty(attrSourcePort.String()).SetInt(int64(e.Source.Port()))
	a.AppendEmpty(attrDestinationAddress.String()).SetStr(dst)
	a.AppendEmpty(attrDestinationPort.String()).SetInt(int64(e.Destination.Port()))
	putStrings(a.AppendEmpty(attrSourceDomains.String()).SetEmptySlice(), srcNames)
	putStrings(a.AppendEmpty(attrDestinationDomains.String()).SetEmptySlice(), dstNames)

	if set.has(attrNetworkTransport) {
		a.AppendEmpty(attrNetworkTransport.String()).SetStr("tcp")
	}
	if set.has(attrNetworkType) {
		a.AppendEmpty(attrNetworkType.String()).SetStr(networkType(e))
	}
	// The local socket's own view, whoever ended or opened the connection.
	local, localText, peer, peerText := e.Source, src, e.Destination, dst
	if e.EndBy != bpf.EndByLocal {
		local, localText, peer, peerText = peer, peerText, local, localText
	}
	if set.has(attrLocalAddress) {
		a.AppendEmpty(attrLocalAddress.String()).SetStr(localText)
	}
	if set.has(attrLocalPort) {
		a.AppendEmpty(attrLocalPort.String()).SetInt(int64(local.Port()))
	}
	if set.has(attrPeerAddress) {
		a.AppendEmpty(attrPeerAddress.String()).SetStr(peerText)
	}
	if set.has(attrPeerPort) {
		a.AppendEmpty(attrPeerPort.String()).SetInt(int64(peer.Port()))
	}
	if e.Direction != bpf.DirectionUnknown {
		// The client is the connecting side: the local one for outgoing.
		client, clientText, server, serverText := local, localText, peer, peerText
		if e.Direction == bpf.DirectionIncoming {
			client, clientText, server, serverText = peer, peerText, local, localText
		}
		if set.has(attrClientAddress) {
			a.AppendEmpty(attrClientAddress.String()).SetStr(clientText)
		}
		if set.has(attrClientPort) {
			a.AppendEmpty(attrClientPort.String()).SetInt(int64(client.Port()))
		}
		if set.has(attrServerAddress) {
			a.AppendEmpty(attrServerAddress.String()).SetStr(serverText)
		}
		if set.has(attrServerPort) {
			a.AppendEmpty(attrServerPort.String()).SetInt(int64(server.Port()))
		}
	}
	// What NAT made of each side, where it is known and something was
	// translated.
	if x := e.Translation; x.Known {
		if x.Local != local {
			if set.has(attrLocalTranslatedAddress) {
				a.AppendEmpty(attrLocalTranslatedAddress.String()).SetStr(c.text(x.Local.Addr()))
			}
			if set.has(attrLocalTranslatedPort) {
				a.AppendEmpty(attrLocalTranslatedPort.String()).SetInt(int64(x.Local.Port()))
			}
		}
		if x.Peer != peer {
			if set.has(attrPeerTranslatedAddress) {
				a.AppendEmpty(attrPeerTranslatedAddress.String()).SetStr(c.text(x.Peer.Addr()))
			}
			if set.has(attrPeerTranslatedPort) {
				a.AppendEmpty(attrPeerTranslatedPort.String()).SetInt(int64(x.Peer.Port()))
			}
		}
	}
	if set.has(attrEndReason) {
		a.AppendEmpty(attrEndReason.String()).SetStr(e.EndReason.String())
	}
	if set.has(attrEndBy) {
		a.AppendEmpty(attrEndBy.String()).SetStr(e.EndBy.String())
	}
	if e.Error != 0 && set.has(attrEndError) {
		a.AppendEmpty(attrEndError.String()).SetStr(unix.ErrnoName(unix.Errno(e.Error)))
	}
	if t := errorType(e); t != "" && set.has(attrErrorType) {
		a.AppendEmpty(attrErrorType.String()).SetStr(t)
	}
	if set.has(attrEstablished) {
		a.AppendEmpty(attrEstablished.String()).SetBool(e.Established())
	}
	startSeen := startObserved(e)
	if set.has(attrStartObserved) {
		a.AppendEmpty(attrStartObserved.String()).SetBool(startSeen)
	}
	if startSeen {
		if set.has(attrStartTime) {
			a.AppendEmpty(attrStartTime.String()).SetInt(int64(clk.wall(e.StartNs)))
		}
		if set.has(attrDuration) {
			a.AppendEmpty(attrDuration.String()).SetDouble(time.Duration(e.TimeNs - e.StartNs).Seconds())
		}
	}
	if e.PID != 0 {
		if set.has(attrProcessPID) {
			a.AppendEmpty(attrProcessPID.String()).SetInt(int64(e.PID))
		}
		if e.Executable != "" && set.has(attrProcessExecutable) {
			a.AppendEmpty(attrProcessExecutable.String()).SetStr(e.Executable)
		}
	}
	if set.has(attrBytesSent) {
		a.AppendEmpty(attrBytesSent.String()).SetInt(int64(e.BytesSent))
	}
	if set.has(attrBytesReceived) {
		a.AppendEmpty(attrBytesReceived.String()).SetInt(int64(e.BytesReceived))
	}
	if set.has(attrSegmentsSent) {
		a.AppendEmpty(attrSegmentsSent.String()).SetInt(int64(e.SegsSent))
	}
	if set.has(attrSegmentsReceived) {
		a.AppendEmpty(attrSegmentsReceived.String()).SetInt(int64(e.SegsReceived))
	}
	if e.SRTTMicros != 0 && set.has(attrRTT) {
		a.AppendEmpty(attrRTT.String()).SetDouble(float64(e.SRTTMicros) / 1e6)
	}
	if set.has(attrRetransmissions) {
		a.AppendEmpty(attrRetransmissions.String()).SetInt(int64(e.Retransmits))
	}
	if set.has(attrSocketCookie) {
		a.AppendEmpty(attrSocketCookie.String()).SetInt(int64(e.Cookie))
	}
	if set.has(attrCgroupID) {
		a.AppendEmpty(attrCgroupID.String()).SetInt(int64(e.CgroupID))
	}
	if e.Netns != 0 && set.has(attrNetns) {
		a.AppendEmpty(attrNetns.String()).SetInt(int64(e.Netns))
	}
	if sni.name != "" && set.has(attrTLSServerName) {
		a.AppendEmpty(attrTLSServerName.String()).SetStr(sni.name)
	}
	if set.has(attrPeerName) {
		if name := peerName(e, srcNames, dstNames, sni); name != "" {
			a.AppendEmpty(attrPeerName.String()).SetStr(name)
		}
	}
	if c.k8sPeer != nil {
		appendK8sPeer(a, c.k8sPeer)
	}
	a.UnsafeIntoMap(lr.Attributes())
}

// bodyArenaSize is the size of the blocks that bodies are carved from:
// about 200 bodies each.
const bodyArenaSize = 16 << 10

// maxSummary is more than the longest summary (two IPv6 addresses with
// ports, the longest reason and errno name).
const maxSummary = 160

// summary returns the record's body. Bodies are written one after the
// other into a block of bodyArenaSize bytes and handed out as strings that
// point into it, so that a record costs no allocation of its own for its
// body. Bytes of the block that a string points to are never written
// again: a new block starts when the current one has too little room left
// (an append past its capacity would move on to a new array in any case).
// A block stays in memory while any of its bodies does.
func (c *converter) summary(e *bpf.Event) string {
	if cap(c.bodies)-len(c.bodies) < maxSummary {
		c.bodies = make([]byte, 0, bodyArenaSize)
	}
	start := len(c.bodies)
	c.bodies = appendSummary(c.bodies, e)
	return unsafe.String(&c.bodies[start], len(c.bodies)-start)
}

// errorType is the error.type of an end that is a failure, with the
// low-cardinality values the semantic conventions ask for; "" for an end
// that is not one (a FIN, a RST of an established connection, a close).
func errorType(e *bpf.Event) string {
	switch e.EndReason {
	case bpf.EndTimeout:
		return "timeout"
	case bpf.EndRST:
		if e.EndBy == bpf.EndByRemote && !e.Established() {
			return "connection_refused" // a RST answered the SYN
		}
	case bpf.EndAbort:
		switch unix.Errno(e.Error) {
		case unix.ECONNREFUSED:
			return "connection_refused" // an ICMP port unreachable
		case unix.EHOSTUNREACH:
			return "host_unreachable"
		case unix.ENETUNREACH:
			return "network_unreachable"
		case unix.ETIMEDOUT:
			return "timeout"
		default:
			return "_OTHER"
		}
	}
	return ""
}

// appendSummary writes the one-line body for people reading a console, e.g.
// "outgoing tcp 10.0.0.1:40000 -> 93.184.216.34:443 ended by local FIN".
func appendSummary(b []byte, e *bpf.Event) []byte {
	b = append(b, e.Direction.String()...)
	b = append(b, " tcp "...)
	b = e.Source.AppendTo(b)
	b = append(b, " -> "...)
	b = e.Destination.AppendTo(b)
	b = append(b, " ended by "...)
	b = append(b, e.EndBy.String()...)
	b = append(b, ' ')
	switch e.EndReason {
	case bpf.EndFIN:
		b = append(b, "FIN"...)
	case bpf.EndRST:
		b = append(b, "RST"...)
	default:
		b = append(b, e.EndReason.String()...)
	}
	if e.Error != 0 {
		b = append(b, " ("...)
		b = append(b, unix.ErrnoName(unix.Errno(e.Error))...)
		b = append(b, ')')
	}
	return b
}

func putStrings(s pcommon.Slice, values []string) {
	s.EnsureCapacity(len(values))
	for _, v := range values {
		s.AppendEmpty().SetStr(v)
	}
}

// serverPort is the accepting side's port; 0 when the direction is
// unknown.
func serverPort(e *bpf.Event) int {
	// Source sent the terminating segment: the local side when it ended
	// by local.
	local, peer := e.Source, e.Destination
	if e.EndBy != bpf.EndByLocal {
		local, peer = peer, local
	}
	switch e.Direction {
	case bpf.DirectionOutgoing:
		return int(peer.Port())
	case bpf.DirectionIncoming:
		return int(local.Port())
	}
	return 0
}

func networkType(e *bpf.Event) string {
	if e.Source.Addr().Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// startObserved says whether the receiver saw the connection start.
func startObserved(e *bpf.Event) bool { return e.StartNs != 0 && e.StartNs <= e.TimeNs }

// peerName is one name for the peer, for grouping (metrics.attributes): the
// first name the DNS cache has for its address (the name that was asked
// for, when the lookup was seen), else the server name this socket sent in
// its ClientHello (then the peer is the TLS server it named). A socket that
// received the ClientHello is the server: the name is its own, not its
// peer's. "" when there is none.
func peerName(e *bpf.Event, srcNames, dstNames []string, sni tlsName) string {
	names := dstNames
	if e.EndBy != bpf.EndByLocal {
		names = srcNames
	}
	if len(names) > 0 {
		return names[0]
	}
	if sni.sent {
		return sni.name
	}
	return ""
}
