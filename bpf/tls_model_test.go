//go:build linux

package bpf

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testhello"
	tp "github.com/netflowtcpend/netflowtcpend/internal/testutils/testpacket"
)

// tlsModel is the hostile tests' reference of tls.h: the slots as the
// programs must keep them across runs, and the piece each segment must
// give. It is written from tls.h's description, the values from its
// defines.
type tlsModel struct {
	limit uint32
	slots map[uint32]*tlsSlot
}

type tlsSlot struct {
	base, limit uint32
	started     bool
}

const (
	tlsSlotBits = 15 // TLS_SLOT_BITS
	thSYN       = 0x02
	thACK       = 0x10
)

func newTLSModel(limit uint32) *tlsModel {
	return &tlsModel{limit: limit, slots: map[uint32]*tlsSlot{}}
}

// slot is the slot of the segment at the start of tcp in the IP packet
// pkt: the hash of the addresses' last 32 bits and the ports as the
// programs load them (little-endian words of wire bytes).
func (m *tlsModel) slot(pkt, tcp []byte, egress bool) *tlsSlot {
	le := binary.LittleEndian.Uint32
	var s, d uint32
	if pkt[0]>>4 == 4 {
		s, d = le(pkt[12:]), le(pkt[16:])
	} else {
		s, d = le(pkt[20:]), le(pkt[36:])
	}
	h := (s ^ le(tcp[0:4]) ^ (d<<16 | d>>16)) * 0x9e3779b1
	key := h >> (32 - tlsSlotBits)
	if egress {
		key ^= 1
	}
	sl := m.slots[key]
	if sl == nil {
		sl = &tlsSlot{}
		m.slots[key] = sl
	}
	return sl
}

// segment is what a TCP segment (its IP packet pkt, the TCP header at
// tcp) does on a socket that is not a listener, as handle() runs it: a
// piece of a wanted stream, and a SYN without ACK leaving starts one.
func (m *tlsModel) segment(pkt, tcp []byte, flags byte, payload []byte, src, dst netip.AddrPort, egress bool) *TLSPiece {
	if m == nil || m.limit == 0 {
		return nil
	}
	seq := binary.BigEndian.Uint32(tcp[4:])
	var out *TLSPiece
	// Data of a segment whose flags do not matter (tcp_flags_matter): not
	// a FIN, RST or SYN without ACK.
	matter := flags&(thFIN|thRST) != 0 || flags&(thSYN|thACK) == thSYN
	if len(payload) > 0 && !matter {
		sl := m.slot(pkt, tcp, egress)
		out = m.piece(sl, seq-sl.base, payload, src, dst, egress)
	}
	if !matter || flags&(thFIN|thRST) != 0 || !egress {
		return out
	}
	sl := m.slot(pkt, tcp, egress)
	*sl = tlsSlot{base: seq + 1, limit: m.limit}
	if len(payload) > 0 {
		out = m.piece(sl, 0, payload, src, dst, egress)
	}
	return out
}

func (m *tlsModel) piece(sl *tlsSlot, offset uint32, payload []byte, src, dst netip.AddrPort, egress bool) *TLSPiece {
	limit := sl.limit
	if offset >= limit {
		return nil
	}
	if offset == 0 {
		limit = m.startLimit(payload[:min(len(payload), 9)])
		if limit == 0 {
			sl.limit = 0
			return nil
		}
		sl.started = true
	} else if !sl.started {
		return nil
	}
	n := min(limit-offset, uint32(len(payload)))
	sl.limit = limit
	if uint32(len(payload)) >= limit-offset {
		sl.limit = 0
	}
	return &TLSPiece{Source: src, Destination: dst, Egress: egress, Offset: int(offset), Limit: int(limit),
		Payload: payload[:n]}
}

// startLimit is tls_start_limit: what the first bytes h say.
func (m *tlsModel) startLimit(h []byte) uint32 {
	n := len(h)
	if h[0] != 22 || n >= 2 && h[1] != 3 || n >= 3 && h[2] > 4 {
		return 0
	}
	limit := m.limit
	if n < 5 {
		return limit
	}
	reclen := uint32(h[3])<<8 | uint32(h[4])
	if reclen == 0 || reclen > 1<<14 || n >= 6 && h[5] != 1 {
		return 0
	}
	if n >= 9 {
		msglen := uint32(h[6])<<16 | uint32(h[7])<<8 | uint32(h[8])
		if msglen+4 <= reclen && reclen+5 < limit {
			limit = reclen + 5
		}
	}
	return limit
}

// tlsBaseFrames are connections that start with a ClientHello, whole and
// in pieces, with TCP Fast Open, and plaintext: each a SYN and its
// segments, in order.
func tlsBaseFrames() [][]byte {
	var frames [][]byte
	small := testhello.Hello{ServerName: "www.example.com"}.Bytes()
	big := testhello.Hello{ServerName: "big.example", KeyShareLen: 1216, ServerNameLast: true}.Bytes()
	for i, pair := range [][2]netip.Addr{{hostA4, hostB4}, {hostA6, hostB6}, {mapped6, hostB6}} {
		src, dst := netip.AddrPortFrom(pair[0], uint16(41000+i)), netip.AddrPortFrom(pair[1], 443)
		frame := func(seq uint32, flags uint8, payload []byte) []byte {
			s := tp.Segment{Src: src, Dst: dst, Seq: seq, Ack: 1, Flags: flags, Payload: payload}
			if pair[0].Is4() {
				return tp.Ethernet(s.IPv4())
			}
			return tp.Ethernet(s.IPv6())
		}
		isn := uint32(0xfffffff0) - uint32(i)
		frames = append(frames,
			frame(isn, tp.SYN, nil), frame(isn+1, tp.ACK|tp.PSH, small),
			frame(isn, tp.SYN, nil), frame(isn+1, tp.ACK, big[:700]), frame(isn+701, tp.ACK|tp.PSH, big[700:]),
			frame(isn, tp.SYN, small), frame(isn+1+uint32(len(small)), tp.ACK|tp.PSH, []byte("after")),
			frame(isn, tp.SYN, nil), frame(isn+1, tp.ACK|tp.PSH, []byte("GET / HTTP/1.1\r\n\r\n")),
		)
	}
	return frames
}

// tlsStreams are connections whose first bytes are ClientHellos of every
// shape, plaintext, or TLS-like garbage, cut into pieces that come in
// order, out of order, repeated, or at sequence numbers that lie.
func tlsStreams(rnd *rand.Rand, n int) [][]byte {
	var frames [][]byte
	pairs := [][2]netip.Addr{{hostA4, hostB4}, {hostA6, hostB6}, {mapped6, hostB6}}
	for range n {
		pair := pairs[rnd.IntN(len(pairs))]
		src := netip.AddrPortFrom(pair[0], uint16(1024+rnd.IntN(64)))
		dst := netip.AddrPortFrom(pair[1], uint16(rnd.IntN(4)+440))
		frame := func(seq uint32, flags uint8, payload []byte) []byte {
			s := tp.Segment{Src: src, Dst: dst, Seq: seq, Ack: 1, Flags: flags, Payload: payload}
			if pair[0].Is4() {
				return tp.Ethernet(s.IPv4())
			}
			return tp.Ethernet(s.IPv6())
		}
		var stream []byte
		switch rnd.IntN(6) {
		case 0:
			stream = []byte("GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
		case 1: // garbage that starts like TLS
			stream = make([]byte, rnd.IntN(1500))
			for i := range stream {
				stream[i] = byte(rnd.Uint32())
			}
			stream = append([]byte{22, 3, byte(rnd.IntN(6)), byte(rnd.IntN(0x45)), byte(rnd.Uint32()), byte(rnd.IntN(3))}, stream...)
		default:
			stream = testhello.Hello{ServerName: "s.example", KeyShareLen: rnd.IntN(2000), Shuffle: rnd.Uint64(),
				RecordLen: rnd.IntN(3) * 300}.Bytes()
		}
		if rnd.IntN(8) == 0 { // a lie in the first bytes
			stream[rnd.IntN(min(9, len(stream)))] = byte(rnd.Uint32())
		}
		isn := rnd.Uint32()
		var inSYN int
		if rnd.IntN(5) == 0 { // TCP Fast Open
			inSYN = rnd.IntN(min(len(stream), 1000))
		}
		frames = append(frames, frame(isn, tp.SYN, stream[:inSYN]))
		type cut struct{ off, end int }
		var cuts []cut
		for off := inSYN; off < len(stream); {
			end := min(len(stream), off+1+rnd.IntN(900))
			cuts = append(cuts, cut{off, end})
			off = end
		}
		if rnd.IntN(4) == 0 && len(cuts) > 1 {
			i := rnd.IntN(len(cuts) - 1)
			cuts[i], cuts[i+1] = cuts[i+1], cuts[i]
		}
		if rnd.IntN(4) == 0 && len(cuts) > 0 {
			cuts = append(cuts, cuts[rnd.IntN(len(cuts))])
		}
		for _, c := range cuts {
			seq := isn + 1 + uint32(c.off)
			if rnd.IntN(16) == 0 {
				seq += uint32(rnd.IntN(3000)) - 1500
			}
			frames = append(frames, frame(seq, tp.ACK|tp.PSH, slices.Clone(stream[c.off:c.end])))
		}
	}
	return frames
}
