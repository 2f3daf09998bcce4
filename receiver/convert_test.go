package receiver

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

func TestAppendRecord(t *testing.T) {
	clk := clock{offset: 1_700_000_000_000_000_000}
	observed := pcommon.Timestamp(1_700_000_123_000_000_000)

	tests := []struct {
		name      string
		event     bpf.Event
		body      string
		severity  plog.SeverityNumber
		sevText   string
		netType   string
		direction string
		reason    string
		endBy     string
		srcNames  []string
		dstNames  []string
	}{
		{
			name: "ipv4 outgoing local FIN",
			event: bpf.Event{
				TimeNs: 5_000_000_000, StartNs: 4_000_000_000, Cookie: 77, CgroupID: 1234, Netns: 4026531840,
				Source:      netip.MustParseAddrPort("10.0.0.1:40000"),
				Destination: netip.MustParseAddrPort("93.184.216.34:443"),
				Direction:   bpf.DirectionOutgoing, EndBy: bpf.EndByLocal, EndFlag: bpf.EndFlagFIN,
			},
			body:     "outgoing tcp 10.0.0.1:40000 -> 93.184.216.34:443 ended by local FIN",
			severity: plog.SeverityNumberInfo, sevText: "INFO", netType: "ipv4",
			direction: "outgoing", reason: "fin", endBy: "local",
			dstNames: []string{"www.example.com", "example.com.cdn.net"},
		},
		{
			name: "ipv6 incoming remote RST",
			event: bpf.Event{
				TimeNs: 5_000_000_000, Cookie: 78, CgroupID: 1,
				Source:      netip.MustParseAddrPort("[2001:db8::2]:51000"),
				Destination: netip.MustParseAddrPort("[2001:db8::1]:8080"),
				Direction:   bpf.DirectionIncoming, EndBy: bpf.EndByRemote, EndFlag: bpf.EndFlagRST,
			},
			body:     "incoming tcp [2001:db8::2]:51000 -> [2001:db8::1]:8080 ended by remote RST",
			severity: plog.SeverityNumberWarn, sevText: "WARN", netType: "ipv6",
			direction: "incoming", reason: "rst", endBy: "remote",
			srcNames: []string{"client.example.org"}, dstNames: []string{"server.example.org"},
		},
		{
			name: "unknown direction",
			event: bpf.Event{
				TimeNs: 5_000_000_000, Cookie: 79,
				Source:      netip.MustParseAddrPort("127.0.0.1:5000"),
				Destination: netip.MustParseAddrPort("127.0.0.1:6000"),
				EndBy:       bpf.EndByRemote, EndFlag: bpf.EndFlagFIN,
			},
			body:     "unknown tcp 127.0.0.1:5000 -> 127.0.0.1:6000 ended by remote FIN",
			severity: plog.SeverityNumberInfo, sevText: "INFO", netType: "ipv4",
			direction: "unknown", reason: "fin", endBy: "remote",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lrs := plog.NewLogRecordSlice()
			appendRecord(lrs, &tt.event, tt.srcNames, tt.dstNames, &clk, observed, nil)
			require.Equal(t, 1, lrs.Len())
			lr := lrs.At(0)

			assert.Equal(t, "netflow.tcp.end", lr.EventName())
			assert.Equal(t, pcommon.Timestamp(1_700_000_005_000_000_000), lr.Timestamp(), "kernel time + clock offset")
			assert.Equal(t, observed, lr.ObservedTimestamp())
			assert.Equal(t, tt.severity, lr.SeverityNumber())
			assert.Equal(t, tt.sevText, lr.SeverityText())
			assert.Equal(t, tt.body, lr.Body().Str())

			want := map[string]any{
				"netflow.direction":           tt.direction,
				"source.address":              tt.event.Source.Addr().String(),
				"source.port":                 int64(tt.event.Source.Port()),
				"destination.address":         tt.event.Destination.Addr().String(),
				"destination.port":            int64(tt.event.Destination.Port()),
				"netflow.source.domains":      strings(tt.srcNames),
				"netflow.destination.domains": strings(tt.dstNames),
				"network.transport":           "tcp",
				"network.type":                tt.netType,
				"netflow.end.reason":          tt.reason,
				"netflow.end.by":              tt.endBy,
				"netflow.socket.cookie":       int64(tt.event.Cookie),
				"netflow.cgroup.id":           int64(tt.event.CgroupID),
			}
			if tt.event.Netns != 0 {
				want["netflow.netns"] = int64(tt.event.Netns)
			}
			assert.Equal(t, want, lr.Attributes().AsRaw())

			// Types as the contract fixes them, not only values.
			for key, typ := range map[string]pcommon.ValueType{
				"source.port": pcommon.ValueTypeInt, "destination.port": pcommon.ValueTypeInt,
				"source.address": pcommon.ValueTypeStr, "netflow.source.domains": pcommon.ValueTypeSlice,
				"netflow.destination.domains": pcommon.ValueTypeSlice,
			} {
				v, ok := lr.Attributes().Get(key)
				require.True(t, ok, key)
				assert.Equal(t, typ, v.Type(), key)
			}
		})
	}
}

func TestAppendRecordReusesBodyBuffer(t *testing.T) {
	lrs := plog.NewLogRecordSlice()
	e := bpf.Event{
		Source: netip.MustParseAddrPort("10.0.0.1:1"), Destination: netip.MustParseAddrPort("10.0.0.2:2"),
		EndBy: bpf.EndByLocal, EndFlag: bpf.EndFlagFIN,
	}
	buf := appendRecord(lrs, &e, nil, nil, &clock{}, 0, nil)
	e.Source = netip.MustParseAddrPort("10.0.0.3:3")
	appendRecord(lrs, &e, nil, nil, &clock{}, 0, buf)
	assert.Equal(t, "unknown tcp 10.0.0.1:1 -> 10.0.0.2:2 ended by local FIN", lrs.At(0).Body().Str(),
		"an earlier body must not change when the buffer is reused")
	assert.Equal(t, "unknown tcp 10.0.0.3:3 -> 10.0.0.2:2 ended by local FIN", lrs.At(1).Body().Str())
}

// strings is how pcommon returns a string slice attribute: empty, not nil,
// when there are no names.
func strings(names []string) []any {
	out := []any{}
	for _, n := range names {
		out = append(out, n)
	}
	return out
}
