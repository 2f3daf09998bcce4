//go:build linux

package bpf

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	tp "github.com/netflowtcpend/netflowtcpend/internal/testutils/testpacket"
)

// These tests run the real compiled programs on crafted packets with
// BPF_PROG_TEST_RUN. Each run gets a fresh dummy socket (no TCP state, no
// socket storage), so they check single packets: the verdict and exactly the
// record expected. Sequences belong to the integration tests.

type testRun struct {
	objs *Objects
	rd   *ringbuf.Reader
}

func newTestRun(t *testing.T) *testRun {
	t.Helper()
	return newTestRunWith(t, Options{RingBufferSize: 1 << 16, DNSPayloadLimit: 1024})
}

func newTestRunWith(t testing.TB, opts Options) *testRun {
	t.Helper()
	testenv.RequireRoot(t)
	objs, err := testLoad(opts)
	require.NoError(t, err)
	t.Cleanup(func() { objs.Close() })
	rd, err := objs.NewReader()
	require.NoError(t, err)
	t.Cleanup(func() { rd.Close() })
	return &testRun{objs: objs, rd: rd}
}

// run runs prog on frame repeat times (on one dummy socket) and returns the
// connection-end records it wrote.
func (r *testRun) run(t *testing.T, prog *ebpf.Program, frame []byte, repeat uint32) []Event {
	t.Helper()
	r.pass(t, prog, frame, repeat)
	return drain(t, r.rd)
}

// runDNS runs prog on frame once and returns the DNS records it wrote.
func (r *testRun) runDNS(t *testing.T, prog *ebpf.Program, frame []byte) []DNSMessage {
	t.Helper()
	r.pass(t, prog, frame, 1)
	var msgs []DNSMessage
	for _, raw := range drainRaw(t, r.rd) {
		if TypeOf(raw) != RecordDNS {
			continue
		}
		var m DNSMessage
		require.NoError(t, m.Decode(raw))
		msgs = append(msgs, m)
	}
	return msgs
}

func (r *testRun) pass(t *testing.T, prog *ebpf.Program, frame []byte, repeat uint32) {
	t.Helper()
	verdict, err := prog.Run(&ebpf.RunOptions{Data: frame, Repeat: repeat})
	require.NoError(t, err)
	require.EqualValues(t, 1, verdict, "the program must let every packet through")
}

var (
	v4a = netip.MustParseAddrPort("10.0.0.1:40000")
	v4b = netip.MustParseAddrPort("93.184.216.34:443")
	v6a = netip.MustParseAddrPort("[2001:db8::1]:40000")
	v6b = netip.MustParseAddrPort("[2001:db8::2]:443")
)

func seg(src, dst netip.AddrPort, flags uint8, payload string) tp.Segment {
	return tp.Segment{Src: src, Dst: dst, Seq: 1000, Ack: 2000, Flags: flags, Payload: []byte(payload)}
}

func TestTestRunSegments(t *testing.T) {
	r := newTestRun(t)

	v4 := func(flags uint8, payload string) []byte { return tp.Ethernet(seg(v4a, v4b, flags, payload).IPv4()) }
	v6 := func(flags uint8, exts ...tp.Ext) []byte {
		return tp.Ethernet(seg(v6a, v6b, flags, "").IPv6(exts...))
	}
	// end is the record expected from a FIN or RST from v4a/v6a to v4b/v6b.
	end := func(src, dst netip.AddrPort, by EndBy, reason EndReason) *Event {
		return &Event{Source: src, Destination: dst, Direction: DirectionUnknown, EndBy: by, EndReason: reason}
	}

	tests := []struct {
		name  string
		frame []byte
		// want is the record from the egress program; the ingress program
		// writes the same record with EndBy remote.
		want *Event
	}{
		{"ipv4 SYN", v4(tp.SYN, ""), nil},
		{"ipv4 SYN-ACK", v4(tp.SYN|tp.ACK, ""), nil},
		{"ipv4 ACK", v4(tp.ACK, ""), nil},
		{"ipv4 data", v4(tp.PSH|tp.ACK, "hello"), nil},
		{"ipv4 FIN", v4(tp.FIN|tp.ACK, ""), end(v4a, v4b, 0, EndFIN)},
		{"ipv4 FIN with data", v4(tp.FIN|tp.PSH|tp.ACK, "bye"), end(v4a, v4b, 0, EndFIN)},
		{"ipv4 RST", v4(tp.RST, ""), end(v4a, v4b, 0, EndRST)},
		{"ipv4 RST-ACK", v4(tp.RST|tp.ACK, ""), end(v4a, v4b, 0, EndRST)},
		{"ipv6 SYN", v6(tp.SYN), nil},
		{"ipv6 data", tp.Ethernet(seg(v6a, v6b, tp.ACK, "data").IPv6()), nil},
		{"ipv6 FIN", v6(tp.FIN | tp.ACK), end(v6a, v6b, 0, EndFIN)},
		{"ipv6 RST", v6(tp.RST), end(v6a, v6b, 0, EndRST)},
		{"ipv6 hop-by-hop FIN", v6(tp.FIN|tp.ACK, tp.Ext{Type: tp.HopByHop}), end(v6a, v6b, 0, EndFIN)},
		{"ipv6 routing RST", v6(tp.RST, tp.Ext{Type: tp.Routing}), end(v6a, v6b, 0, EndRST)},
		{"ipv6 destination options FIN", v6(tp.FIN, tp.Ext{Type: tp.DestOptions}), end(v6a, v6b, 0, EndFIN)},
		{"ipv6 authentication header FIN", v6(tp.FIN, tp.Ext{Type: tp.AuthHeader}), end(v6a, v6b, 0, EndFIN)},
		{"ipv6 first fragment FIN", v6(tp.FIN, tp.Ext{Type: tp.Fragment}), end(v6a, v6b, 0, EndFIN)},
		{"ipv6 chain of five FIN", v6(tp.FIN, tp.Ext{Type: tp.HopByHop}, tp.Ext{Type: tp.DestOptions},
			tp.Ext{Type: tp.Routing}, tp.Ext{Type: tp.Fragment}, tp.Ext{Type: tp.DestOptions}), end(v6a, v6b, 0, EndFIN)},
		{"ipv6 later fragment", v6(tp.FIN, tp.Ext{Type: tp.Fragment, FragmentOffset: 100}), nil},
		{"ipv6 chain too long to walk", v6(tp.FIN, tp.Ext{Type: tp.DestOptions}, tp.Ext{Type: tp.DestOptions},
			tp.Ext{Type: tp.DestOptions}, tp.Ext{Type: tp.DestOptions}, tp.Ext{Type: tp.DestOptions},
			tp.Ext{Type: tp.DestOptions}, tp.Ext{Type: tp.DestOptions}), nil},
		{"ipv4 later fragment", tp.Ethernet(mangle(seg(v4a, v4b, tp.FIN, "").IPv4(), func(b []byte) { b[6], b[7] = 0x00, 0x10 })), nil},
		{"ipv4 UDP", tp.Ethernet(mangle(seg(v4a, v4b, tp.FIN, "").IPv4(), func(b []byte) { b[9] = 17 })), nil},
		{"ipv6 UDP", tp.Ethernet(mangle(seg(v6a, v6b, tp.FIN, "").IPv6(), func(b []byte) { b[6] = 17 })), nil},
		{"ipv4 header length below 5", tp.Ethernet(mangle(seg(v4a, v4b, tp.FIN, "").IPv4(), func(b []byte) { b[0] = 0x44 })), nil},
		{"ipv4 wrong version", tp.Ethernet(mangle(seg(v4a, v4b, tp.FIN, "").IPv4(), func(b []byte) { b[0] = 0x65 })), nil},
		{"tcp data offset below 5", tp.Ethernet(mangle(seg(v4a, v4b, tp.FIN, "").IPv4(), func(b []byte) { b[32] = 0x40 })), nil},
		{"tcp data offset past the end", tp.Ethernet(mangle(seg(v4a, v4b, tp.FIN, "").IPv4(), func(b []byte) { b[32] = 0xf0 })), nil},
		{"truncated tcp header", tp.Ethernet(seg(v4a, v4b, tp.FIN, "").IPv4()[:30]), nil},
		{"ipv4 header length past the end", tp.Ethernet(mangle(seg(v4a, v4b, tp.FIN, "").IPv4(), func(b []byte) { b[0] = 0x4f })), nil},
		{"ipv4 header only", tp.Ethernet(seg(v4a, v4b, tp.FIN, "").IPv4()[:20]), nil},
		{"ipv6 header only", tp.Ethernet(seg(v6a, v6b, tp.FIN, "").IPv6()[:40]), nil},
		{"truncated ipv6 extension", tp.Ethernet(seg(v6a, v6b, tp.FIN, "").IPv6(tp.Ext{Type: tp.Routing})[:42]), nil},
		// The kernel refuses to test-run frames shorter than an IP header,
		// so truncated IP headers are not listed.
	}
	for _, tt := range tests {
		for _, dir := range []struct {
			name string
			prog *ebpf.Program
			by   EndBy
		}{{"egress", r.objs.objs.Egress, EndByLocal}, {"ingress", r.objs.objs.Ingress, EndByRemote}} {
			t.Run(tt.name+"/"+dir.name, func(t *testing.T) {
				events := r.run(t, dir.prog, tt.frame, 1)
				if tt.want == nil {
					assert.Empty(t, events)
					return
				}
				require.Len(t, events, 1)
				want := *tt.want
				want.EndBy = dir.by
				assertEvent(t, want, events[0])
			})
		}
	}
}

func TestTestRunRetransmittedFINYieldsOneRecord(t *testing.T) {
	r := newTestRun(t)
	for _, prog := range []*ebpf.Program{r.objs.objs.Egress, r.objs.objs.Ingress} {
		frame := tp.Ethernet(seg(v4a, v4b, tp.FIN|tp.ACK, "").IPv4())
		assert.Len(t, r.run(t, prog, frame, 2), 1)
		assert.Len(t, r.run(t, prog, frame, 5), 1)
	}
}

func assertEvent(t *testing.T, want, got Event) {
	t.Helper()
	assert.Equal(t, want.Source, got.Source, "source")
	assert.Equal(t, want.Destination, got.Destination, "destination")
	assert.Equal(t, want.Direction, got.Direction, "direction")
	assert.Equal(t, want.EndBy, got.EndBy, "end by")
	assert.Equal(t, want.EndReason, got.EndReason, "end reason")
	assert.Zero(t, got.StartNs, "start is not observed on a fresh socket")
	assert.NotZero(t, got.TimeNs, "time")
	assert.NotZero(t, got.Cookie, "socket cookie")
	assert.Zero(t, got.Flags, "flags")
}

// mangle changes a packet in place and returns it.
func mangle(b []byte, f func([]byte)) []byte {
	f(b)
	return b
}

func TestTestRunDNS(t *testing.T) {
	r := newTestRun(t)
	resolver4 := netip.MustParseAddrPort("10.0.0.53:53")
	resolver6 := netip.MustParseAddrPort("[2001:db8::53]:53")
	query := []byte("\x12\x34\x01\x00query bytes")
	big := make([]byte, 3000) // test-run takes frames up to about a page
	for i := range big {
		big[i] = byte(i)
	}
	udp4 := func(src, dst netip.AddrPort, p []byte) []byte {
		return tp.Ethernet(tp.Datagram{Src: src, Dst: dst, Payload: p}.IPv4())
	}
	tcpDNS := func(src, dst netip.AddrPort, flags uint8, p []byte) []byte {
		return tp.Ethernet(tp.Segment{Src: src, Dst: dst, Seq: 1, Ack: 1, Flags: flags, Payload: p}.IPv4())
	}

	tests := []struct {
		name   string
		egress bool
		frame  []byte
		want   []byte // the payload copied; nil: no DNS record
		wire   int
		tcp    bool
		endToo bool // a connection-end record as well
	}{
		{name: "udp query sent", egress: true, frame: udp4(v4a, resolver4, query), want: query, wire: len(query)},
		{name: "udp answer received", frame: udp4(resolver4, v4a, query), want: query, wire: len(query)},
		{name: "udp query received (a server)", frame: udp4(v4a, resolver4, query)},
		{name: "udp answer sent (a server)", egress: true, frame: udp4(resolver4, v4a, query)},
		{name: "udp other port", egress: true, frame: udp4(v4a, netip.MustParseAddrPort("10.0.0.53:443"), query)},
		{name: "udp ipv6 query", egress: true, frame: tp.Ethernet(tp.Datagram{Src: v6a, Dst: resolver6, Payload: query}.IPv6()),
			want: query, wire: len(query)},
		{name: "udp large answer is cut at the limit", frame: udp4(resolver4, v4a, big), want: big[:1024], wire: 3000},
		{name: "udp empty", egress: true, frame: udp4(v4a, resolver4, nil)},
		{name: "tcp query", egress: true, frame: tcpDNS(v4a, resolver4, tp.PSH|tp.ACK, query), want: query, wire: len(query), tcp: true},
		{name: "tcp answer with FIN", frame: tcpDNS(resolver4, v4a, tp.FIN|tp.PSH|tp.ACK, query), want: query, wire: len(query),
			tcp: true, endToo: true},
		{name: "tcp handshake", egress: true, frame: tcpDNS(v4a, resolver4, tp.SYN, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog := r.objs.objs.Ingress
			if tt.egress {
				prog = r.objs.objs.Egress
			}
			r.pass(t, prog, tt.frame, 1)
			var msgs []DNSMessage
			ends := 0
			for _, raw := range drainRaw(t, r.rd) {
				switch TypeOf(raw) {
				case RecordDNS:
					var m DNSMessage
					require.NoError(t, m.Decode(raw))
					msgs = append(msgs, m)
				case RecordTCPEnd:
					ends++
				}
			}
			if tt.endToo {
				assert.Equal(t, 1, ends)
			} else {
				assert.Zero(t, ends)
			}
			if tt.want == nil {
				assert.Empty(t, msgs)
				return
			}
			require.Len(t, msgs, 1)
			m := msgs[0]
			assert.Equal(t, tt.want, m.Payload)
			assert.Equal(t, tt.wire, m.WireLen)
			assert.Equal(t, tt.egress, m.Egress)
			assert.Equal(t, tt.tcp, m.TCP)
			assert.NotZero(t, m.Cookie)
			assert.NotZero(t, m.TimeNs)
		})
	}
}

func TestTestRunDNSOff(t *testing.T) {
	r := newTestRunWith(t, Options{RingBufferSize: 1 << 16})
	frame := tp.Ethernet(tp.Datagram{Src: v4a, Dst: netip.MustParseAddrPort("10.0.0.53:53"), Payload: []byte("q")}.IPv4())
	assert.Empty(t, r.runDNS(t, r.objs.objs.Egress, frame))
}
