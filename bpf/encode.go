//go:build linux

package bpf

import (
	"net/netip"
	"unsafe"
)

// The records as the programs write them: the inverse of the Decode
// methods. Tests write records with them (crafted, malformed, or in
// bulk through the benchmark filler of internal/testutils/bpftest); the
// receiver only decodes.

// raw returns e in the kernel's layout.
func (e *Event) raw() netflowEvent {
	r := netflowEvent{
		Type: uint8(RecordTCPEnd), Direction: uint8(e.Direction), EndBy: uint8(e.EndBy), EndReason: uint8(e.EndReason),
		State: e.State, Error: e.Error, Flags: e.Flags, Netns: e.Netns,
		TimeNs: e.TimeNs, StartNs: e.StartNs, Cookie: e.Cookie, CgroupId: e.CgroupID,
		Sport: e.Source.Port(), Dport: e.Destination.Port(), SrttUs: e.SRTTMicros,
		BytesSent: e.BytesSent, BytesReceived: e.BytesReceived,
		SegsSent: e.SegsSent, SegsReceived: e.SegsReceived, Retransmits: e.Retransmits, Pid: e.PID,
	}
	r.Family, r.Saddr, r.Daddr = wireAddrs(e.Source.Addr(), e.Destination.Addr())
	if x := e.Translation; x.Known {
		r.Flags |= FlagTranslation
		r.XlatLport, r.XlatPport = x.Local.Port(), x.Peer.Port()
		r.XlatLocal, r.XlatPeer = x.Local.Addr().As16(), x.Peer.Addr().As16()
		if r.Family == familyIPv4 {
			a, b := x.Local.Addr().As4(), x.Peer.Addr().As4()
			r.XlatLocal, r.XlatPeer = [16]uint8{}, [16]uint8{}
			copy(r.XlatLocal[:], a[:])
			copy(r.XlatPeer[:], b[:])
		}
	}
	for i := 0; i < len(e.Executable) && i < len(r.Exe)-1; i++ {
		r.Exe[i] = int8(e.Executable[i])
	}
	return r
}

// wireAddrs returns the family and the addresses of a record: IPv4 when
// both are. Decode unmaps each address on its own, so a record may pair an
// IPv4 address with an IPv6 one, written as IPv6.
func wireAddrs(src, dst netip.Addr) (family uint8, s, d [16]uint8) {
	if !src.Is4() || !dst.Is4() {
		return familyIPv6, src.As16(), dst.As16()
	}
	a, b := src.As4(), dst.As4()
	copy(s[:], a[:])
	copy(d[:], b[:])
	return familyIPv4, s, d
}

// Encode returns e as the kernel writes it: the inverse of Decode, for tests
// and benchmarks.
func (e *Event) Encode() []byte {
	r := e.raw()
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&r)), EventSize)...)
}

// Encode returns m as the kernel writes it, header and payload: the inverse
// of Decode, for tests.
func (m *DNSMessage) Encode() []byte {
	h := netflowDnsEvent{
		Type: uint8(RecordDNS), Protocol: 17, Netns: m.Netns,
		PayloadLen: uint32(len(m.Payload)), WireLen: uint32(m.WireLen),
		TimeNs: m.TimeNs, Cookie: m.Cookie, Sport: m.Source.Port(), Dport: m.Destination.Port(),
	}
	if m.TCP {
		h.Protocol = 6
	}
	if m.Egress {
		h.Egress = 1
	}
	h.Family, h.Saddr, h.Daddr = wireAddrs(m.Source.Addr(), m.Destination.Addr())
	out := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&h)), DNSHeaderSize)...)
	return append(out, m.Payload...)
}

// Encode returns c as the kernel writes it, for tests: the inverse of
// Decode, except that a Truncated c's Path is written cut to what a record
// holds.
func (c *CgroupCreated) Encode() []byte {
	r := netflowCgroupEvent{Type: uint8(RecordCgroup), CgroupId: c.ID, ParentId: c.ParentID, PathLen: uint16(c.PathLen)}
	if c.Truncated {
		r.Truncated = 1
	}
	for i := 0; i < len(c.Path) && i < len(r.Path)-1; i++ {
		r.Path[i] = int8(c.Path[i])
	}
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&r)), CgroupRecordSize)...)
}

// Encode returns p as the kernel writes it, header and payload.
func (p *TLSPiece) Encode() []byte {
	h := netflowTlsEvent{
		Type: uint8(RecordTLS), Netns: p.Netns, Offset: uint32(p.Offset), PayloadLen: uint32(len(p.Payload)),
		Limit: uint32(p.Limit), TimeNs: p.TimeNs, Cookie: p.Cookie, Sport: p.Source.Port(), Dport: p.Destination.Port(),
	}
	if p.Egress {
		h.Egress = 1
	}
	if p.Listener {
		h.Listener = 1
	}
	h.Family, h.Saddr, h.Daddr = wireAddrs(p.Source.Addr(), p.Destination.Addr())
	out := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&h)), TLSHeaderSize)...)
	return append(out, p.Payload...)
}
