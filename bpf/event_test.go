//go:build linux

package bpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// encode writes e as the kernel does, through the type bpf2go generated from
// netflow.h, so that a layout change in C that Decode misses fails here.
func encode(t *testing.T, e any) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, binary.Write(&buf, binary.LittleEndian, e))
	return buf.Bytes()
}

func TestDecode(t *testing.T) {
	v4 := netflowEvent{
		Type: 1, Netns: 4026531840,
		TimeNs: 2_000_000_123, StartNs: 1_000_000_000, Cookie: 0x1122334455, CgroupId: 4242,
		Sport: 40000, Dport: 443, Family: 4, Direction: 2, EndBy: 1, EndReason: 1, Flags: FlagRetried,
		State: 1, SrttUs: 250, BytesSent: 1000, BytesReceived: 2000, SegsSent: 7, SegsReceived: 8, Retransmits: 2,
	}
	copy(v4.Saddr[:], []byte{10, 0, 0, 1})
	copy(v4.Daddr[:], []byte{93, 184, 216, 34})

	v6 := v4
	v6.Family, v6.Direction, v6.EndBy, v6.EndReason, v6.Flags, v6.State, v6.Error = 6, 1, 2, 3, 0, 2, 110
	a, b := netip.MustParseAddr("2001:db8::1").As16(), netip.MustParseAddr("2001:db8::2").As16()
	v6.Saddr, v6.Daddr = a, b

	// A Service's DNAT seen by the client: the translation in the
	// record's family, and a dual-stack socket's mapped one unmapped.
	x4 := v4
	x4.Flags = FlagTranslation
	copy(x4.XlatLocal[:], []byte{10, 0, 0, 1})
	copy(x4.XlatPeer[:], []byte{10, 1, 0, 7})
	x4.XlatLport, x4.XlatPport = 40000, 8080
	x6 := v6
	x6.Flags = FlagTranslation
	x6.XlatLocal, x6.XlatPeer = a, netip.MustParseAddr("::ffff:10.1.0.7").As16()
	x6.XlatLport, x6.XlatPport = 40000, 8080
	withX := func(e Event, local, peer string) Event {
		e.Flags |= FlagTranslation
		e.Translation = Translation{Known: true, Local: netip.MustParseAddrPort(local), Peer: netip.MustParseAddrPort(peer)}
		return e
	}
	outgoing4 := Event{
		TimeNs: 2_000_000_123, StartNs: 1_000_000_000, Cookie: 0x1122334455, CgroupID: 4242, Netns: 4026531840,
		Source:      netip.MustParseAddrPort("10.0.0.1:40000"),
		Destination: netip.MustParseAddrPort("93.184.216.34:443"),
		Direction:   DirectionOutgoing, EndBy: EndByLocal, EndReason: EndFIN,
		State: 1, SRTTMicros: 250, BytesSent: 1000, BytesReceived: 2000, SegsSent: 7, SegsReceived: 8, Retransmits: 2,
	}
	incoming6 := Event{
		TimeNs: 2_000_000_123, StartNs: 1_000_000_000, Cookie: 0x1122334455, CgroupID: 4242, Netns: 4026531840,
		Source:      netip.MustParseAddrPort("[2001:db8::1]:40000"),
		Destination: netip.MustParseAddrPort("[2001:db8::2]:443"),
		Direction:   DirectionIncoming, EndBy: EndByRemote, EndReason: EndTimeout, State: 2, Error: 110,
		SRTTMicros: 250, BytesSent: 1000, BytesReceived: 2000, SegsSent: 7, SegsReceived: 8, Retransmits: 2,
	}

	tests := []struct {
		name string
		in   netflowEvent
		want Event
	}{
		{"ipv4 translated", x4, withX(outgoing4, "10.0.0.1:40000", "10.1.0.7:8080")},
		{"ipv6 translated, mapped", x6, withX(incoming6, "[2001:db8::1]:40000", "10.1.0.7:8080")},
		{"ipv4 outgoing local FIN retried", v4, Event{
			TimeNs: 2_000_000_123, StartNs: 1_000_000_000, Cookie: 0x1122334455, CgroupID: 4242, Netns: 4026531840,
			Source:      netip.MustParseAddrPort("10.0.0.1:40000"),
			Destination: netip.MustParseAddrPort("93.184.216.34:443"),
			Direction:   DirectionOutgoing, EndBy: EndByLocal, EndReason: EndFIN, Flags: FlagRetried,
			State: 1, SRTTMicros: 250, BytesSent: 1000, BytesReceived: 2000, SegsSent: 7, SegsReceived: 8, Retransmits: 2,
		}},
		{"ipv6 incoming timeout", v6, Event{
			TimeNs: 2_000_000_123, StartNs: 1_000_000_000, Cookie: 0x1122334455, CgroupID: 4242, Netns: 4026531840,
			Source:      netip.MustParseAddrPort("[2001:db8::1]:40000"),
			Destination: netip.MustParseAddrPort("[2001:db8::2]:443"),
			Direction:   DirectionIncoming, EndBy: EndByRemote, EndReason: EndTimeout, State: 2, Error: 110,
			SRTTMicros: 250, BytesSent: 1000, BytesReceived: 2000, SegsSent: 7, SegsReceived: 8, Retransmits: 2,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Event
			require.NoError(t, got.Decode(encode(t, tt.in)))
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestDecodeRejectsBadRecords(t *testing.T) {
	good := netflowEvent{Type: 1, Family: 4, EndBy: 1, EndReason: 1}
	tests := []struct {
		name    string
		raw     []byte
		wantErr string
	}{
		{"short", encode(t, good)[:EventSize-1], "record of 223 bytes, want 224"},
		{"type", encode(t, netflowEvent{Type: 2, Family: 4, EndBy: 1, EndReason: 1}), "record type 2 is not a connection end"},
		{"family", encode(t, netflowEvent{Type: 1, Family: 5, EndBy: 1, EndReason: 1}), "unknown address family 5"},
		{"end side", encode(t, netflowEvent{Type: 1, Family: 4, EndBy: 3, EndReason: 1}), "unknown end side 3"},
		{"end reason", encode(t, netflowEvent{Type: 1, Family: 6, EndBy: 2, EndReason: 6}), "unknown end reason 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Event
			assert.EqualError(t, e.Decode(tt.raw), tt.wantErr)
		})
	}
}

func TestDecodeDNS(t *testing.T) {
	h := netflowDnsEvent{
		Type: 2, Family: 6, Protocol: 17, Egress: 0, Netns: 4026532000,
		PayloadLen: 5, WireLen: 1500, TimeNs: 77, Cookie: 99, Sport: 53, Dport: 40000,
	}
	h.Saddr = netip.MustParseAddr("fd53::1").As16()
	h.Daddr = netip.MustParseAddr("fd53::2").As16()
	raw := append(encode(t, h), "hello"...)
	require.Len(t, raw, DNSHeaderSize+5)

	var m DNSMessage
	require.NoError(t, m.Decode(raw))
	assert.Equal(t, DNSMessage{
		TimeNs: 77, Cookie: 99, Netns: 4026532000,
		Source:      netip.MustParseAddrPort("[fd53::1]:53"),
		Destination: netip.MustParseAddrPort("[fd53::2]:40000"),
		WireLen:     1500, Payload: []byte("hello"),
	}, m)

	h.Protocol, h.Egress, h.Family = 6, 1, 4
	require.NoError(t, m.Decode(append(encode(t, h), "hello"...)))
	assert.True(t, m.TCP)
	assert.True(t, m.Egress)
	assert.Equal(t, netip.MustParseAddrPort("253.83.0.0:53"), m.Source, "IPv4 uses the first four bytes")

	for _, bad := range []struct {
		name    string
		raw     []byte
		wantErr string
	}{
		{"short", raw[:DNSHeaderSize-1], "DNS record of 71 bytes, want at least 72"},
		{"payload past the end", raw[:DNSHeaderSize+4], "DNS record says 5 payload bytes, has 4"},
		{"not DNS", encode(t, netflowEvent{Type: 1, Family: 4, EndBy: 1, EndReason: 1}), "record type 1 is not DNS"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			assert.EqualError(t, m.Decode(bad.raw), bad.wantErr)
		})
	}
}

func TestEncodeIsTheInverseOfDecode(t *testing.T) {
	for _, e := range []Event{
		{TimeNs: 9, StartNs: 3, Cookie: 7, CgroupID: 11, Netns: 13,
			Source:      netip.MustParseAddrPort("10.0.0.1:1"),
			Destination: netip.MustParseAddrPort("10.0.0.2:2"),
			Direction:   DirectionIncoming, EndBy: EndByRemote, EndReason: EndTimeout, State: 2, Error: 110,
			Flags: FlagRetried, SRTTMicros: 5, BytesSent: 100, BytesReceived: 200, SegsSent: 3, SegsReceived: 4,
			Retransmits: 1, PID: 42, Executable: "nginx"},
		{Source: netip.MustParseAddrPort("[2001:db8::1]:443"), Destination: netip.MustParseAddrPort("[2001:db8::2]:5"),
			EndBy: EndByLocal, EndReason: EndFIN},
	} {
		var got Event
		require.NoError(t, got.Decode(e.Encode()))
		assert.Equal(t, e, got)
	}
}
