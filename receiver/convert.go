package receiver

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

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
	AttrEndReason          = "netflow.end.reason"
	AttrEndBy              = "netflow.end.by"
	AttrSocketCookie       = "netflow.socket.cookie"
	AttrCgroupID           = "netflow.cgroup.id"
	AttrNetns              = "netflow.netns"
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
	if e.EndFlag == bpf.EndFlagRST {
		lr.SetSeverityNumber(plog.SeverityNumberWarn)
		lr.SetSeverityText("WARN")
	} else {
		lr.SetSeverityNumber(plog.SeverityNumberInfo)
		lr.SetSeverityText("INFO")
	}
	body = appendSummary(body[:0], e)
	lr.Body().SetStr(string(body))

	attrs := lr.Attributes()
	attrs.EnsureCapacity(14)
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
	if e.EndFlag == bpf.EndFlagRST {
		attrs.PutStr(AttrEndReason, "rst")
	} else {
		attrs.PutStr(AttrEndReason, "fin")
	}
	attrs.PutStr(AttrEndBy, e.EndBy.String())
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
	b = append(b, e.EndFlag.String()...)
	return b
}

func putStrings(s pcommon.Slice, values []string) {
	s.EnsureCapacity(len(values))
	for _, v := range values {
		s.AppendEmpty().SetStr(v)
	}
}
