//go:build linux

package receiver

import (
	"net/netip"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// EventName is the LogRecord EventName of every record.
const EventName = "netflow.tcp.end"

// Attribute keys (the README's record table). Semantic-convention keys come
// from the semconv package; the netflow.* ones have no convention.
const (
	AttrDirection          = "netflow.direction"
	AttrSourceAddress      = string(semconv.SourceAddressKey)
	AttrSourcePort         = string(semconv.SourcePortKey)
	AttrDestinationAddress = string(semconv.DestinationAddressKey)
	AttrDestinationPort    = string(semconv.DestinationPortKey)
	AttrSourceDomains      = "netflow.source.domains"
	AttrDestinationDomains = "netflow.destination.domains"
	AttrNetworkTransport   = string(semconv.NetworkTransportKey)
	AttrNetworkType        = string(semconv.NetworkTypeKey)
	AttrClientAddress      = string(semconv.ClientAddressKey)
	AttrClientPort         = string(semconv.ClientPortKey)
	AttrServerAddress      = string(semconv.ServerAddressKey)
	AttrServerPort         = string(semconv.ServerPortKey)
	AttrEndReason          = "netflow.end.reason"
	AttrEndBy              = "netflow.end.by"
	AttrEndError           = "netflow.end.error"
	AttrEstablished        = "netflow.established"
	AttrStartTime          = "netflow.start_time_unix_nano"
	AttrDuration           = "netflow.duration"
	AttrBytesSent          = "netflow.bytes.sent"
	AttrBytesReceived      = "netflow.bytes.received"
	AttrSegmentsSent       = "netflow.segments.sent"
	AttrSegmentsReceived   = "netflow.segments.received"
	AttrRTT                = "netflow.tcp.rtt"
	AttrRetransmissions    = "netflow.tcp.retransmissions"
	AttrSocketCookie       = "netflow.socket.cookie"
	AttrCgroupID           = "netflow.cgroup.id"
	AttrNetns              = "netflow.netns"
	AttrStartObserved      = "netflow.start_observed"
	AttrProcessPID         = string(semconv.ProcessPIDKey)
	AttrProcessExecutable  = string(semconv.ProcessExecutableNameKey)
)

// maxAttributes is the most attributes one record carries (every key above),
// so that a record's attribute map is allocated once.
const maxAttributes = 31

// converter turns events into log records. It keeps what it can reuse from
// record to record; it is not safe for concurrent use.
type converter struct {
	clock clock
	body  []byte // the summary is built here before it becomes a string
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

	attrs := lr.Attributes()
	attrs.EnsureCapacity(maxAttributes)
	attrs.PutStr(AttrDirection, e.Direction.String())
	attrs.PutStr(AttrSourceAddress, src)
	attrs.PutInt(AttrSourcePort, int64(e.Source.Port()))
	attrs.PutStr(AttrDestinationAddress, dst)
	attrs.PutInt(AttrDestinationPort, int64(e.Destination.Port()))
	putStrings(attrs.PutEmptySlice(AttrSourceDomains), srcNames)
	putStrings(attrs.PutEmptySlice(AttrDestinationDomains), dstNames)
	attrs.PutStr(AttrNetworkTransport, "tcp")
	if e.Source.Addr().Is4() {
		attrs.PutStr(AttrNetworkType, "ipv4")
	} else {
		attrs.PutStr(AttrNetworkType, "ipv6")
	}
	if e.Direction != bpf.DirectionUnknown {
		// The client is the connecting side: the local one for outgoing.
		clientIsSource := (e.Direction == bpf.DirectionOutgoing) == (e.EndBy == bpf.EndByLocal)
		client, clientText, server, serverText := e.Source, src, e.Destination, dst
		if !clientIsSource {
			client, clientText, server, serverText = server, serverText, client, clientText
		}
		attrs.PutStr(AttrClientAddress, clientText)
		attrs.PutInt(AttrClientPort, int64(client.Port()))
		attrs.PutStr(AttrServerAddress, serverText)
		attrs.PutInt(AttrServerPort, int64(server.Port()))
	}
	attrs.PutStr(AttrEndReason, e.EndReason.String())
	attrs.PutStr(AttrEndBy, e.EndBy.String())
	if e.Error != 0 {
		attrs.PutStr(AttrEndError, unix.ErrnoName(unix.Errno(e.Error)))
	}
	attrs.PutBool(AttrEstablished, e.Established())
	startObserved := e.StartNs != 0 && e.StartNs <= e.TimeNs
	attrs.PutBool(AttrStartObserved, startObserved)
	if startObserved {
		attrs.PutInt(AttrStartTime, int64(clk.wall(e.StartNs)))
		attrs.PutDouble(AttrDuration, time.Duration(e.TimeNs-e.StartNs).Seconds())
	}
	if e.PID != 0 {
		attrs.PutInt(AttrProcessPID, int64(e.PID))
		if e.Executable != "" {
			attrs.PutStr(AttrProcessExecutable, e.Executable)
		}
	}
	attrs.PutInt(AttrBytesSent, int64(e.BytesSent))
	attrs.PutInt(AttrBytesReceived, int64(e.BytesReceived))
	attrs.PutInt(AttrSegmentsSent, int64(e.SegsSent))
	attrs.PutInt(AttrSegmentsReceived, int64(e.SegsReceived))
	if e.SRTTMicros != 0 {
		attrs.PutDouble(AttrRTT, float64(e.SRTTMicros)/1e6)
	}
	attrs.PutInt(AttrRetransmissions, int64(e.Retransmits))
	attrs.PutInt(AttrSocketCookie, int64(e.Cookie))
	attrs.PutInt(AttrCgroupID, int64(e.CgroupID))
	if e.Netns != 0 {
		attrs.PutInt(AttrNetns, int64(e.Netns))
	}
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
