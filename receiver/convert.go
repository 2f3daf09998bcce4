//go:build linux

package receiver

import (
	"net/netip"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// EventName is the LogRecord EventName of every record.
const EventName = "netflow.tcp.end"

// converter turns events into log records. It keeps what it can reuse from
// record to record; it is not safe for concurrent use.
type converter struct {
	clock    clock
	attrs    attributeSet // what records carry
	capacity int          // attrs.count(): the most attributes of a record
	body     []byte       // the summary is built here before it becomes a string
	// The text of recently seen addresses: servers and clients repeat.
	addrText map[netip.Addr]string
}

// maxAddrText bounds the address texts kept; the map starts over when full.
const maxAddrText = 4096

func (c *converter) text(a netip.Addr) string {
	if s, ok := c.addrText[a]; ok {
		return s
	}
	if c.addrText == nil || len(c.addrText) >= maxAddrText {
		c.addrText = make(map[netip.Addr]string)
	}
	s := a.String()
	c.addrText[a] = s
	return s
}

// append adds the log record for e to lrs, with the names the DNS cache
// knows for each side.
func (c *converter) append(lrs plog.LogRecordSlice, e *bpf.Event, srcNames, dstNames []string, observed pcommon.Timestamp) {
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
	c.body = appendSummary(c.body[:0], e)
	lr.Body().SetStr(string(c.body))
	src, dst := c.text(e.Source.Addr()), c.text(e.Destination.Addr())
	set := c.attrs

	attrs := lr.Attributes()
	attrs.EnsureCapacity(c.capacity)
	// The event's own fields, always.
	attrs.PutStr(AttrDirection, e.Direction.String())
	attrs.PutStr(AttrSourceAddress, src)
	attrs.PutInt(AttrSourcePort, int64(e.Source.Port()))
	attrs.PutStr(AttrDestinationAddress, dst)
	attrs.PutInt(AttrDestinationPort, int64(e.Destination.Port()))
	putStrings(attrs.PutEmptySlice(AttrSourceDomains), srcNames)
	putStrings(attrs.PutEmptySlice(AttrDestinationDomains), dstNames)

	if set.has(attrNetworkTransport) {
		attrs.PutStr(AttrNetworkTransport, "tcp")
	}
	if set.has(attrNetworkType) {
		if e.Source.Addr().Is4() {
			attrs.PutStr(AttrNetworkType, "ipv4")
		} else {
			attrs.PutStr(AttrNetworkType, "ipv6")
		}
	}
	// The local socket's own view, whoever ended or opened the connection.
	local, localText, peer, peerText := e.Source, src, e.Destination, dst
	if e.EndBy != bpf.EndByLocal {
		local, localText, peer, peerText = peer, peerText, local, localText
	}
	if set.has(attrLocalAddress) {
		attrs.PutStr(AttrLocalAddress, localText)
	}
	if set.has(attrLocalPort) {
		attrs.PutInt(AttrLocalPort, int64(local.Port()))
	}
	if set.has(attrPeerAddress) {
		attrs.PutStr(AttrPeerAddress, peerText)
	}
	if set.has(attrPeerPort) {
		attrs.PutInt(AttrPeerPort, int64(peer.Port()))
	}
	if e.Direction != bpf.DirectionUnknown {
		// The client is the connecting side: the local one for outgoing.
		client, clientText, server, serverText := local, localText, peer, peerText
		if e.Direction == bpf.DirectionIncoming {
			client, clientText, server, serverText = peer, peerText, local, localText
		}
		if set.has(attrClientAddress) {
			attrs.PutStr(AttrClientAddress, clientText)
		}
		if set.has(attrClientPort) {
			attrs.PutInt(AttrClientPort, int64(client.Port()))
		}
		if set.has(attrServerAddress) {
			attrs.PutStr(AttrServerAddress, serverText)
		}
		if set.has(attrServerPort) {
			attrs.PutInt(AttrServerPort, int64(server.Port()))
		}
	}
	if set.has(attrEndReason) {
		attrs.PutStr(AttrEndReason, e.EndReason.String())
	}
	if set.has(attrEndBy) {
		attrs.PutStr(AttrEndBy, e.EndBy.String())
	}
	if e.Error != 0 && set.has(attrEndError) {
		attrs.PutStr(AttrEndError, unix.ErrnoName(unix.Errno(e.Error)))
	}
	if t := errorType(e); t != "" && set.has(attrErrorType) {
		attrs.PutStr(AttrErrorType, t)
	}
	if set.has(attrEstablished) {
		attrs.PutBool(AttrEstablished, e.Established())
	}
	startObserved := e.StartNs != 0 && e.StartNs <= e.TimeNs
	if set.has(attrStartObserved) {
		attrs.PutBool(AttrStartObserved, startObserved)
	}
	if startObserved {
		if set.has(attrStartTime) {
			attrs.PutInt(AttrStartTime, int64(clk.wall(e.StartNs)))
		}
		if set.has(attrDuration) {
			attrs.PutDouble(AttrDuration, time.Duration(e.TimeNs-e.StartNs).Seconds())
		}
	}
	if e.PID != 0 {
		if set.has(attrProcessPID) {
			attrs.PutInt(AttrProcessPID, int64(e.PID))
		}
		if e.Executable != "" && set.has(attrProcessExecutable) {
			attrs.PutStr(AttrProcessExecutable, e.Executable)
		}
	}
	if set.has(attrBytesSent) {
		attrs.PutInt(AttrBytesSent, int64(e.BytesSent))
	}
	if set.has(attrBytesReceived) {
		attrs.PutInt(AttrBytesReceived, int64(e.BytesReceived))
	}
	if set.has(attrSegmentsSent) {
		attrs.PutInt(AttrSegmentsSent, int64(e.SegsSent))
	}
	if set.has(attrSegmentsReceived) {
		attrs.PutInt(AttrSegmentsReceived, int64(e.SegsReceived))
	}
	if e.SRTTMicros != 0 && set.has(attrRTT) {
		attrs.PutDouble(AttrRTT, float64(e.SRTTMicros)/1e6)
	}
	if set.has(attrRetransmissions) {
		attrs.PutInt(AttrRetransmissions, int64(e.Retransmits))
	}
	if set.has(attrSocketCookie) {
		attrs.PutInt(AttrSocketCookie, int64(e.Cookie))
	}
	if set.has(attrCgroupID) {
		attrs.PutInt(AttrCgroupID, int64(e.CgroupID))
	}
	if e.Netns != 0 && set.has(attrNetns) {
		attrs.PutInt(AttrNetns, int64(e.Netns))
	}
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
