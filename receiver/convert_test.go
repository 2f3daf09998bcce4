//go:build linux

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
	conv := converter{clock: clk, attrs: allAttributes}
	observed := pcommon.Timestamp(1_700_000_123_000_000_000)
	counters := func(e bpf.Event) bpf.Event {
		e.BytesSent, e.BytesReceived, e.SegsSent, e.SegsReceived, e.Retransmits, e.SRTTMicros = 1000, 2000, 7, 8, 1, 1500
		return e
	}

	tests := []struct {
		name               string
		event              bpf.Event
		srcNames, dstNames []string
		sni                tlsName
		body               string
		severity           plog.SeverityNumber
		want               map[string]any
	}{
		{
			name: "ipv4 outgoing local FIN",
			event: counters(bpf.Event{
				TimeNs: 5_500_000_000, StartNs: 4_000_000_000, Cookie: 77, CgroupID: 1234, Netns: 4026531840,
				Source:      netip.MustParseAddrPort("10.0.0.1:40000"),
				Destination: netip.MustParseAddrPort("93.184.216.34:443"),
				Direction:   bpf.DirectionOutgoing, EndBy: bpf.EndByLocal, EndReason: bpf.EndFIN, State: 1,
				PID: 4242, Executable: "curl",
			}),
			dstNames: []string{"www.example.com", "example.com.cdn.net"},
			body:     "outgoing tcp 10.0.0.1:40000 -> 93.184.216.34:443 ended by local FIN",
			severity: plog.SeverityNumberInfo,
			want: map[string]any{
				"netflow.direction": "outgoing",
				"source.address":    "10.0.0.1", "source.port": int64(40000),
				"destination.address": "93.184.216.34", "destination.port": int64(443),
				"netflow.source.domains":      []any{},
				"netflow.destination.domains": []any{"www.example.com", "example.com.cdn.net"},
				"network.transport":           "tcp", "network.type": "ipv4",
				"network.local.address": "10.0.0.1", "network.local.port": int64(40000),
				"network.peer.address": "93.184.216.34", "network.peer.port": int64(443),
				"client.address": "10.0.0.1", "client.port": int64(40000),
				"server.address": "93.184.216.34", "server.port": int64(443),
				"netflow.end.reason": "fin", "netflow.end.by": "local", "netflow.established": true,
				"netflow.start_time_unix_nano": int64(1_700_000_004_000_000_000), "netflow.duration": 1.5,
				"netflow.bytes.sent": int64(1000), "netflow.bytes.received": int64(2000),
				"netflow.segments.sent": int64(7), "netflow.segments.received": int64(8),
				"netflow.tcp.rtt": 0.0015, "netflow.tcp.retransmissions": int64(1),
				"netflow.socket.cookie": int64(77), "netflow.cgroup.id": int64(1234), "netflow.netns": int64(4026531840),
				"netflow.start_observed": true, "process.pid": int64(4242), "process.executable.name": "curl",
				"netflow.peer.name": "www.example.com",
			},
		},
		{
			name: "ipv6 incoming remote RST",
			event: bpf.Event{
				TimeNs: 5_500_000_000, StartNs: 5_000_000_000, Cookie: 78, CgroupID: 1,
				Source:      netip.MustParseAddrPort("[2001:db8::2]:51000"),
				Destination: netip.MustParseAddrPort("[2001:db8::1]:8080"),
				Direction:   bpf.DirectionIncoming, EndBy: bpf.EndByRemote, EndReason: bpf.EndRST, State: 1,
			},
			srcNames: []string{"client.example.org"}, dstNames: []string{"server.example.org"},
			body:     "incoming tcp [2001:db8::2]:51000 -> [2001:db8::1]:8080 ended by remote RST",
			severity: plog.SeverityNumberWarn,
			want: map[string]any{
				"netflow.direction": "incoming",
				"source.address":    "2001:db8::2", "source.port": int64(51000),
				"destination.address": "2001:db8::1", "destination.port": int64(8080),
				"netflow.source.domains":      []any{"client.example.org"},
				"netflow.destination.domains": []any{"server.example.org"},
				"network.transport":           "tcp", "network.type": "ipv6",
				"network.local.address": "2001:db8::1", "network.local.port": int64(8080),
				"network.peer.address": "2001:db8::2", "network.peer.port": int64(51000),
				"client.address": "2001:db8::2", "client.port": int64(51000),
				"server.address": "2001:db8::1", "server.port": int64(8080),
				"netflow.end.reason": "rst", "netflow.end.by": "remote", "netflow.established": true,
				"netflow.start_time_unix_nano": int64(1_700_000_005_000_000_000), "netflow.duration": 0.5,
				"netflow.bytes.sent": int64(0), "netflow.bytes.received": int64(0),
				"netflow.segments.sent": int64(0), "netflow.segments.received": int64(0),
				"netflow.tcp.retransmissions": int64(0),
				"netflow.socket.cookie":       int64(78), "netflow.cgroup.id": int64(1),
				"netflow.start_observed": true, "netflow.peer.name": "client.example.org",
			},
		},
		{
			name: "refused connect: RST before the handshake completed",
			event: bpf.Event{
				TimeNs: 5_000_000_000, StartNs: 4_999_000_000, Cookie: 80,
				Source:      netip.MustParseAddrPort("10.0.0.2:80"),
				Destination: netip.MustParseAddrPort("10.0.0.1:41000"),
				Direction:   bpf.DirectionOutgoing, EndBy: bpf.EndByRemote, EndReason: bpf.EndRST, State: 2,
			},
			body:     "outgoing tcp 10.0.0.2:80 -> 10.0.0.1:41000 ended by remote RST",
			severity: plog.SeverityNumberWarn,
			want: map[string]any{
				"netflow.direction": "outgoing",
				"source.address":    "10.0.0.2", "source.port": int64(80),
				"destination.address": "10.0.0.1", "destination.port": int64(41000),
				"netflow.source.domains": []any{}, "netflow.destination.domains": []any{},
				"network.transport": "tcp", "network.type": "ipv4",
				"network.local.address": "10.0.0.1", "network.local.port": int64(41000),
				"network.peer.address": "10.0.0.2", "network.peer.port": int64(80),
				"client.address": "10.0.0.1", "client.port": int64(41000),
				"server.address": "10.0.0.2", "server.port": int64(80),
				"netflow.end.reason": "rst", "netflow.end.by": "remote", "netflow.established": false,
				"error.type":                   "connection_refused",
				"netflow.start_time_unix_nano": int64(1_700_000_004_999_000_000), "netflow.duration": 0.001,
				"netflow.bytes.sent": int64(0), "netflow.bytes.received": int64(0),
				"netflow.segments.sent": int64(0), "netflow.segments.received": int64(0),
				"netflow.tcp.retransmissions": int64(0),
				"netflow.socket.cookie":       int64(80), "netflow.cgroup.id": int64(0),
				"netflow.start_observed": true,
			},
		},
		{
			name: "connect timeout",
			event: bpf.Event{
				TimeNs: 5_000_000_000, StartNs: 2_000_000_000, Cookie: 81,
				Source:      netip.MustParseAddrPort("10.0.0.1:42000"),
				Destination: netip.MustParseAddrPort("192.0.2.1:443"),
				Direction:   bpf.DirectionOutgoing, EndBy: bpf.EndByLocal, EndReason: bpf.EndTimeout, State: 2, Error: 110,
				SegsSent: 3,
			},
			body:     "outgoing tcp 10.0.0.1:42000 -> 192.0.2.1:443 ended by local timeout (ETIMEDOUT)",
			severity: plog.SeverityNumberWarn,
			want: map[string]any{
				"netflow.direction": "outgoing",
				"source.address":    "10.0.0.1", "source.port": int64(42000),
				"destination.address": "192.0.2.1", "destination.port": int64(443),
				"netflow.source.domains": []any{}, "netflow.destination.domains": []any{},
				"network.transport": "tcp", "network.type": "ipv4",
				"network.local.address": "10.0.0.1", "network.local.port": int64(42000),
				"network.peer.address": "192.0.2.1", "network.peer.port": int64(443),
				"client.address": "10.0.0.1", "client.port": int64(42000),
				"server.address": "192.0.2.1", "server.port": int64(443),
				"netflow.end.reason": "timeout", "netflow.end.by": "local", "netflow.end.error": "ETIMEDOUT",
				"error.type":                   "timeout",
				"netflow.established":          false,
				"netflow.start_time_unix_nano": int64(1_700_000_002_000_000_000), "netflow.duration": 3.0,
				"netflow.bytes.sent": int64(0), "netflow.bytes.received": int64(0),
				"netflow.segments.sent": int64(3), "netflow.segments.received": int64(0),
				"netflow.tcp.retransmissions": int64(0),
				"netflow.socket.cookie":       int64(81), "netflow.cgroup.id": int64(0),
				"netflow.start_observed": true,
			},
		},
		{
			name: "unknown direction, start not observed",
			event: bpf.Event{
				TimeNs: 5_000_000_000, Cookie: 79,
				Source:      netip.MustParseAddrPort("127.0.0.1:5000"),
				Destination: netip.MustParseAddrPort("127.0.0.1:6000"),
				EndBy:       bpf.EndByRemote, EndReason: bpf.EndFIN, State: 1,
			},
			body:     "unknown tcp 127.0.0.1:5000 -> 127.0.0.1:6000 ended by remote FIN",
			severity: plog.SeverityNumberInfo,
			want: map[string]any{
				"netflow.direction": "unknown",
				"source.address":    "127.0.0.1", "source.port": int64(5000),
				"destination.address": "127.0.0.1", "destination.port": int64(6000),
				"netflow.source.domains": []any{}, "netflow.destination.domains": []any{},
				"network.transport": "tcp", "network.type": "ipv4",
				"network.local.address": "127.0.0.1", "network.local.port": int64(6000),
				"network.peer.address": "127.0.0.1", "network.peer.port": int64(5000),
				"netflow.end.reason": "fin", "netflow.end.by": "remote", "netflow.established": true,
				"netflow.bytes.sent": int64(0), "netflow.bytes.received": int64(0),
				"netflow.segments.sent": int64(0), "netflow.segments.received": int64(0),
				"netflow.tcp.retransmissions": int64(0),
				"netflow.socket.cookie":       int64(79), "netflow.cgroup.id": int64(0),
				"netflow.start_observed": false,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lrs := plog.NewLogRecordSlice()
			conv.append(lrs, &tt.event, tt.srcNames, tt.dstNames, tt.sni, observed)
			require.Equal(t, 1, lrs.Len())
			lr := lrs.At(0)

			assert.Equal(t, "netflow.tcp.end", lr.EventName())
			assert.Equal(t, pcommon.Timestamp(clk.offset+int64(tt.event.TimeNs)), lr.Timestamp(), "kernel time + clock offset")
			assert.Equal(t, observed, lr.ObservedTimestamp())
			assert.Equal(t, tt.severity, lr.SeverityNumber())
			assert.Equal(t, map[plog.SeverityNumber]string{plog.SeverityNumberInfo: "INFO", plog.SeverityNumberWarn: "WARN"}[tt.severity], lr.SeverityText())
			assert.Equal(t, tt.body, lr.Body().Str())
			got := lr.Attributes().AsRaw()
			if d, ok := got["netflow.duration"].(float64); ok {
				assert.InDelta(t, tt.want["netflow.duration"], d, 1e-9)
				got["netflow.duration"] = tt.want["netflow.duration"]
			}
			assert.Equal(t, tt.want, got)

			// Types as the contract fixes them, not only values.
			for key, typ := range map[string]pcommon.ValueType{
				"source.port": pcommon.ValueTypeInt, "destination.port": pcommon.ValueTypeInt,
				"source.address": pcommon.ValueTypeStr, "netflow.source.domains": pcommon.ValueTypeSlice,
				"netflow.destination.domains": pcommon.ValueTypeSlice, "netflow.established": pcommon.ValueTypeBool,
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
		EndBy: bpf.EndByLocal, EndReason: bpf.EndFIN,
	}
	var conv converter
	conv.append(lrs, &e, nil, nil, tlsName{}, 0)
	e.Source = netip.MustParseAddrPort("10.0.0.3:3")
	conv.append(lrs, &e, nil, nil, tlsName{}, 0)
	assert.Equal(t, "unknown tcp 10.0.0.1:1 -> 10.0.0.2:2 ended by local FIN", lrs.At(0).Body().Str(),
		"an earlier body must not change when the buffer is reused")
	assert.Equal(t, "unknown tcp 10.0.0.3:3 -> 10.0.0.2:2 ended by local FIN", lrs.At(1).Body().Str())
}

// Every attribute but the event's own fields can be left out, and then is.
func TestAttributesCanBeLeftOut(t *testing.T) {
	e := bpf.Event{
		TimeNs: 5_500_000_000, StartNs: 4_000_000_000, Cookie: 77, CgroupID: 1234, Netns: 4026531840,
		Source:      netip.MustParseAddrPort("10.0.0.1:40000"),
		Destination: netip.MustParseAddrPort("93.184.216.34:443"),
		Direction:   bpf.DirectionOutgoing, EndBy: bpf.EndByLocal, EndReason: bpf.EndTimeout, State: 2, Error: 110,
		SRTTMicros: 100, PID: 4242, Executable: "curl",
		Translation: bpf.Translation{Known: true,
			Local: netip.MustParseAddrPort("192.0.2.1:40001"), Peer: netip.MustParseAddrPort("10.1.0.7:8443")},
	}
	sni := tlsName{name: "www.example.com", sent: true}
	full := plog.NewLogRecordSlice()
	(&converter{attrs: allAttributes}).append(full, &e, nil, nil, sni, 0)
	assert.Equal(t, int(numAttributes), full.At(0).Attributes().Len(), "this event carries every attribute")

	cfg := AttributesConfig{Exclude: optionalAttributeKeys()}
	require.Empty(t, cfg.validate())
	minimal := plog.NewLogRecordSlice()
	(&converter{attrs: cfg.set()}).append(minimal, &e, nil, nil, sni, 0)
	var keys []string
	for k := range minimal.At(0).Attributes().All() {
		keys = append(keys, k)
	}
	assert.Equal(t, []string{attrDirection.String(), attrSourceAddress.String(), attrSourcePort.String(), attrDestinationAddress.String(),
		attrDestinationPort.String(), attrSourceDomains.String(), attrDestinationDomains.String()}, keys)

	one := plog.NewLogRecordSlice()
	(&converter{attrs: AttributesConfig{Exclude: []string{attrSocketCookie.String()}}.set()}).append(one, &e, nil, nil, sni, 0)
	_, ok := one.At(0).Attributes().Get(attrSocketCookie.String())
	assert.False(t, ok)
	assert.Equal(t, int(numAttributes)-1, one.At(0).Attributes().Len())
}

// The translated sides are there only where NAT changed them; the address
// attributes are the socket's own view whoever ended the connection.
func TestTranslationAttributes(t *testing.T) {
	local, service := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.96.0.10:80")
	backend, node := netip.MustParseAddrPort("10.1.0.7:8080"), netip.MustParseAddrPort("192.0.2.1:40001")
	for _, tt := range []struct {
		name        string
		x           bpf.Translation
		endBy       bpf.EndBy
		local, peer string // "" for absent
	}{
		{name: "unknown", endBy: bpf.EndByLocal},
		{name: "nothing translated", x: bpf.Translation{Known: true, Local: local, Peer: service}, endBy: bpf.EndByLocal},
		{name: "DNAT, ended here", x: bpf.Translation{Known: true, Local: local, Peer: backend}, endBy: bpf.EndByLocal, peer: "10.1.0.7:8080"},
		{name: "DNAT, ended there", x: bpf.Translation{Known: true, Local: local, Peer: backend}, endBy: bpf.EndByRemote, peer: "10.1.0.7:8080"},
		{name: "DNAT and SNAT", x: bpf.Translation{Known: true, Local: node, Peer: backend}, endBy: bpf.EndByRemote,
			local: "192.0.2.1:40001", peer: "10.1.0.7:8080"},
		{name: "port only", x: bpf.Translation{Known: true, Local: local, Peer: netip.AddrPortFrom(service.Addr(), 8080)},
			endBy: bpf.EndByLocal, peer: "10.96.0.10:8080"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := bpf.Event{Source: local, Destination: service, Direction: bpf.DirectionOutgoing, EndBy: tt.endBy,
				EndReason: bpf.EndFIN, Translation: tt.x}
			if tt.endBy == bpf.EndByRemote {
				e.Source, e.Destination = service, local
			}
			lrs := plog.NewLogRecordSlice()
			(&converter{attrs: allAttributes}).append(lrs, &e, nil, nil, tlsName{}, 0)
			a := lrs.At(0).Attributes()
			side := func(addrKey, portKey string) string {
				addr, ok := a.Get(addrKey)
				port, pok := a.Get(portKey)
				require.Equal(t, ok, pok, "address and port come together")
				if !ok {
					return ""
				}
				return netip.AddrPortFrom(netip.MustParseAddr(addr.Str()), uint16(port.Int())).String()
			}
			assert.Equal(t, tt.local, side(attrLocalTranslatedAddress.String(), attrLocalTranslatedPort.String()))
			assert.Equal(t, tt.peer, side(attrPeerTranslatedAddress.String(), attrPeerTranslatedPort.String()))
			assert.Equal(t, local.String(), side(attrLocalAddress.String(), attrLocalPort.String()))
			assert.Equal(t, service.String(), side(attrPeerAddress.String(), attrPeerPort.String()))
			assert.Equal(t, service.String(), side(attrServerAddress.String(), attrServerPort.String()))
		})
	}
}

func TestAttributeExclusionsAreChecked(t *testing.T) {
	errs := AttributesConfig{Exclude: []string{"source.address", "netflow.cookie", attrRTT.String()}}.validate()
	require.Len(t, errs, 2)
	require.EqualError(t, errs[0], `attributes.exclude: "source.address" is a field of the event itself and cannot be left out`)
	assert.ErrorContains(t, errs[1], `attributes.exclude: "netflow.cookie" is not an attribute of this receiver; the attributes are: network.transport, network.type,`)
}

func TestErrorType(t *testing.T) {
	for _, tt := range []struct {
		name  string
		event bpf.Event
		want  string
	}{
		{"FIN", bpf.Event{EndReason: bpf.EndFIN, EndBy: bpf.EndByRemote, State: 1}, ""},
		{"RST of an established connection", bpf.Event{EndReason: bpf.EndRST, EndBy: bpf.EndByRemote, State: 1}, ""},
		{"refused connect", bpf.Event{EndReason: bpf.EndRST, EndBy: bpf.EndByRemote, State: 2}, "connection_refused"},
		{"timeout", bpf.Event{EndReason: bpf.EndTimeout, EndBy: bpf.EndByLocal, State: 2, Error: 110}, "timeout"},
		{"ICMP port unreachable", bpf.Event{EndReason: bpf.EndAbort, Error: 111}, "connection_refused"},
		{"ICMP host unreachable", bpf.Event{EndReason: bpf.EndAbort, Error: 113}, "host_unreachable"},
		{"ICMP network unreachable", bpf.Event{EndReason: bpf.EndAbort, Error: 101}, "network_unreachable"},
		{"killed with ss -K", bpf.Event{EndReason: bpf.EndAbort, Error: 103}, "_OTHER"},
		{"connect given up", bpf.Event{EndReason: bpf.EndClosed, EndBy: bpf.EndByLocal, State: 2}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, errorType(&tt.event))
		})
	}
}

// The server name and the DNS names: both as they are, whether they agree
// or not (a CDN's shared address); the peer's name is the DNS name first,
// else the server name the socket sent.
func TestTLSServerNameAttributes(t *testing.T) {
	client := netip.MustParseAddrPort("10.0.0.1:40000")
	server := netip.MustParseAddrPort("93.184.216.34:443")
	outgoing := bpf.Event{Source: client, Destination: server, Direction: bpf.DirectionOutgoing, EndBy: bpf.EndByLocal, EndReason: bpf.EndFIN}
	incoming := bpf.Event{Source: client, Destination: server, Direction: bpf.DirectionIncoming, EndBy: bpf.EndByRemote, EndReason: bpf.EndFIN}
	tests := []struct {
		name               string
		event              bpf.Event
		srcNames, dstNames []string
		sni                tlsName
		serverName         string // "": absent
		peerName           string
		dstDomains         []any
	}{
		{"client, DNS and SNI disagree", outgoing, nil, []string{"edge.cdn.example"}, tlsName{"www.example.com", true},
			"www.example.com", "edge.cdn.example", []any{"edge.cdn.example"}},
		{"client, SNI only", outgoing, nil, nil, tlsName{"www.example.com", true}, "www.example.com", "www.example.com", []any{}},
		{"client, DNS only", outgoing, nil, []string{"www.example.com"}, tlsName{}, "", "www.example.com", []any{"www.example.com"}},
		{"server: the name is its own, not its peer's", incoming, nil, nil, tlsName{"www.example.com", false}, "www.example.com", "", []any{}},
		{"server, the client's DNS name", incoming, []string{"client.example"}, nil, tlsName{"www.example.com", false},
			"www.example.com", "client.example", []any{}},
		{"neither", outgoing, nil, nil, tlsName{}, "", "", []any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lrs := plog.NewLogRecordSlice()
			(&converter{attrs: allAttributes}).append(lrs, &tt.event, tt.srcNames, tt.dstNames, tt.sni, 0)
			a := lrs.At(0).Attributes().AsRaw()
			for key, want := range map[string]string{attrTLSServerName.String(): tt.serverName, attrPeerName.String(): tt.peerName} {
				if want == "" {
					assert.NotContains(t, a, key)
				} else {
					assert.Equal(t, want, a[key], key)
				}
			}
			assert.Equal(t, tt.dstDomains, a[attrDestinationDomains.String()])
		})
	}
}
