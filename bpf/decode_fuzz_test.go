//go:build linux

package bpf

import (
	"bytes"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// FuzzDecode feeds arbitrary bytes to the decoders of ring buffer records:
// neither panics, a DNS or TLS payload never reaches past the record, and what
// decodes encodes to a record that decodes the same; to the same bytes when
// the input was in the kernel's canonical form (see canonicalEvent and
// canonicalDNS). make test fuzzes it for FUZZTIME, make fuzz longer.
func FuzzDecode(f *testing.F) {
	for _, e := range []Event{
		{TimeNs: 1, Cookie: 2, Source: v4a, Destination: v4b, Direction: DirectionOutgoing, EndBy: EndByLocal, EndReason: EndFIN,
			PID: 42, Executable: "curl", BytesSent: 10, SRTTMicros: 100},
		{Source: v6a, Destination: v6b, EndBy: EndByRemote, EndReason: EndClosed, Flags: FlagRetried | FlagNoStorage, Error: 110},
		// An IPv4-mapped address next to an IPv6 one: decoded as IPv4 and IPv6.
		{Source: netip.AddrPortFrom(netip.MustParseAddr("::ffff:10.0.0.1"), 1), Destination: v6b, EndBy: EndByLocal, EndReason: EndRST},
	} {
		f.Add(e.Encode())
	}
	for _, m := range []DNSMessage{
		{TimeNs: 1, Cookie: 2, Source: v4a, Destination: netip.MustParseAddrPort("10.0.0.53:53"), Egress: true, WireLen: 5, Payload: []byte("query")},
		{Source: netip.MustParseAddrPort("[2001:db8::53]:53"), Destination: v6a, TCP: true, WireLen: 3000, Payload: []byte("\x00\x03abc")},
		{Source: v4a, Destination: v4b},
	} {
		f.Add(m.Encode())
	}
	for _, p := range []TLSPiece{
		{TimeNs: 1, Cookie: 2, Source: v4a, Destination: v4b, Egress: true, Offset: 0, Limit: 300, Payload: []byte{22, 3, 1, 1, 39, 1}},
		{Cookie: 3, Listener: true, Netns: 7, Source: v6a, Destination: v6b, Offset: 1200, Limit: MaxTLSHello, Payload: []byte("rest")},
	} {
		f.Add(p.Encode())
	}
	f.Add([]byte{})
	f.Add([]byte{byte(RecordTCPEnd)})
	f.Add([]byte{byte(RecordDNS)})

	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		if err := e.Decode(b); err == nil {
			var interned Event
			in := NewInterner()
			require.NoError(t, interned.DecodeInterned(b, in))
			require.Equal(t, e, interned)
			again := e.Encode()
			var e2 Event
			require.NoError(t, e2.Decode(again), "a decoded record re-encodes to one that decodes")
			require.Equal(t, e, e2)
			if canonicalEvent(b) {
				require.Equal(t, b, again, "re-encoded")
			}
		}
		var m DNSMessage
		if err := m.Decode(b); err == nil {
			require.LessOrEqual(t, DNSHeaderSize+len(m.Payload), len(b))
			again := m.Encode()
			var m2 DNSMessage
			require.NoError(t, m2.Decode(again))
			require.Equal(t, m, m2)
			if canonicalDNS(b) {
				require.Equal(t, b, again, "re-encoded")
			}
		}
		var p TLSPiece
		if err := p.Decode(b); err == nil {
			require.LessOrEqual(t, TLSHeaderSize+len(p.Payload), len(b))
			require.LessOrEqual(t, p.Offset+len(p.Payload), p.Limit)
			require.LessOrEqual(t, p.Limit, MaxTLSHello)
			again := p.Encode()
			var p2 TLSPiece
			require.NoError(t, p2.Decode(again))
			require.Equal(t, p, p2)
			if canonicalTLS(b) {
				require.Equal(t, b, again, "re-encoded")
			}
		}
	})
}

// canonicalTLS says whether b is a TLS record as the kernel writes it, as
// canonicalDNS does for DNS.
func canonicalTLS(b []byte) bool {
	if len(b) < TLSHeaderSize {
		return false
	}
	var h netflowTlsEvent
	copyInto(&h, b)
	return len(b) == TLSHeaderSize+int(h.PayloadLen) && h.Pad == 0 && h.Pad2 == 0 && h.Egress <= 1 && h.Listener <= 1 &&
		canonicalAddrs(h.Family, h.Saddr[:], h.Daddr[:])
}

// canonicalEvent says whether b is an event as the kernel writes it, which
// Decode and Encode keep byte for byte: exactly one record, no bytes in the
// unused part of IPv4 addresses, no IPv4-mapped IPv6 addresses (which
// Decode unmaps, as on the wire), and an executable name that ends in a NUL
// followed by zeros only, present only with a process id.
func canonicalEvent(b []byte) bool {
	if len(b) != EventSize {
		return false
	}
	var ev netflowEvent
	copyInto(&ev, b)
	if !canonicalAddrs(ev.Family, ev.Saddr[:], ev.Daddr[:]) || ev.Pad != 0 {
		return false
	}
	// The translation is written only with its flag; without, its bytes
	// stay zero.
	if ev.Flags&FlagTranslation == 0 {
		if ev.XlatLocal != [16]byte{} || ev.XlatPeer != [16]byte{} || ev.XlatLport != 0 || ev.XlatPport != 0 {
			return false
		}
	} else if !canonicalAddrs(ev.Family, ev.XlatLocal[:], ev.XlatPeer[:]) {
		return false
	}
	exe := make([]byte, len(ev.Exe))
	for i, c := range ev.Exe {
		exe[i] = byte(c)
	}
	if ev.Pid == 0 {
		return bytes.Count(exe, []byte{0}) == len(exe)
	}
	n := bytes.IndexByte(exe, 0)
	return n >= 0 && bytes.Count(exe[n:], []byte{0}) == len(exe)-n
}

// canonicalDNS says whether b is a DNS record as the kernel writes it:
// header and payload only, padding zero, a protocol and an egress flag as
// the kernel sets them, and addresses as canonicalEvent wants them.
func canonicalDNS(b []byte) bool {
	if len(b) < DNSHeaderSize {
		return false
	}
	var h netflowDnsEvent
	copyInto(&h, b)
	return len(b) == DNSHeaderSize+int(h.PayloadLen) && h.Pad == 0 && h.Egress <= 1 &&
		canonicalAddrs(h.Family, h.Saddr[:], h.Daddr[:])
}

func canonicalAddrs(family uint8, src, dst []byte) bool {
	switch family {
	case familyIPv4:
		return bytes.Count(src[4:], []byte{0}) == 12 && bytes.Count(dst[4:], []byte{0}) == 12
	case familyIPv6:
		return !netip.AddrFrom16([16]byte(src)).Is4In6() && !netip.AddrFrom16([16]byte(dst)).Is4In6()
	}
	return false
}

// copyInto copies b into the kernel-layout struct *dst.
func copyInto[T any](dst *T, b []byte) {
	copy(unsafe.Slice((*byte)(unsafe.Pointer(dst)), unsafe.Sizeof(*dst)), b)
}
