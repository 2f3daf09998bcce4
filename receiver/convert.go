package receiver

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// EventName is the LogRecord EventName of every record.
const EventName = "netflow.tcp.end"

// Attribute keys (see CONTRACT.md and the README's attribute table).
const (
	AttrDirection          = "netflow.direction"
	AttrSourceAddress      = "source.address"
	AttrSourcePort         = "source.port"
	AttrDestinationAddress = "destination.address"
	AttrDestinationPort    = "destination.port"
	AttrSourceDomains      = "netflow.source.domains"
	AttrDestinationDomains = "netflow.destination.domains"
	AttrNetworkTransport   = "network.transport"
	AttrNetworkType        = "network.type"
	AttrClientAddress      = "client.address"
	AttrClientPort         = "client.port"
	AttrServerAddress      = "server.address"
	AttrServerPort         = "server.port"
	AttrEndReason          = "netflow.end.reason"
	AttrEndBy              = "netflow.end.by"
	AttrEndError           = "netflow.end.error"
	AttrEstablished        = "netflow.established"
	AttrStartTime          = "netflow.start_time"
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
	AttrProcessPID         = "process.pid"
	AttrProcessExecutable  = "process.executable.name"
)

// appendRecord adds the log record for e to lrs, with the names the DNS
// cache knows for each side. It returns body, a buffer reused across calls.
func appendRecord(lrs plog.LogRecordSlice, e *bpf.Event, srcNames, dstNames []string,
	clk *clock, observed pcommon.Timestamp, body []byte,
) []byte {
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
	body = appendSummary(body[:0], e)
	lr.Body().SetStr(string(body))

	attrs := lr.Attributes()
	attrs.EnsureCapacity(31)
	attrs.PutStr(AttrDirection, e.Direction.String())
	attrs.PutStr(AttrSourceAddress, e.Source.Addr().String())
	attrs.PutInt(AttrSourcePort, int64(e.Source.Port()))
	attrs.PutStr(AttrDestinationAddress, e.Destination.Addr().String())
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
		local, remote := e.Source, e.Destination
		if e.EndBy == bpf.EndByRemote {
			local, remote = remote, local
		}
		client, server := local, remote
		if e.Direction == bpf.DirectionIncoming {
			client, server = remote, local
		}
		attrs.PutStr(AttrClientAddress, client.Addr().String())
		attrs.PutInt(AttrClientPort, int64(client.Port()))
		attrs.PutStr(AttrServerAddress, server.Addr().String())
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
		attrs.PutStr(AttrStartTime, clk.wall(e.StartNs).AsTime().Format(time.RFC3339Nano))
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
	return body
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
