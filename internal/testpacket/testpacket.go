// Package testpacket builds TCP/IP packets for tests: well-formed ones with
// correct checksums (for raw sockets), and the bytes to mangle into bad ones.
package testpacket

import (
	"encoding/binary"
	"net/netip"
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// IPv6 extension header types.
const (
	HopByHop    = 0
	Routing     = 43
	Fragment    = 44
	AuthHeader  = 51
	DestOptions = 60
)

// Segment describes a TCP segment.
type Segment struct {
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Flags    uint8
	Window   uint16
	Payload  []byte
}

// TCPHeader returns the TCP header and payload, with the checksum computed
// over the pseudo-header of Src and Dst.
func (s Segment) TCPHeader() []byte {
	b := make([]byte, 20+len(s.Payload))
	binary.BigEndian.PutUint16(b[0:], s.Src.Port())
	binary.BigEndian.PutUint16(b[2:], s.Dst.Port())
	binary.BigEndian.PutUint32(b[4:], s.Seq)
	binary.BigEndian.PutUint32(b[8:], s.Ack)
	b[12] = 5 << 4
	b[13] = s.Flags
	win := s.Window
	if win == 0 {
		win = 65535
	}
	binary.BigEndian.PutUint16(b[14:], win)
	copy(b[20:], s.Payload)

	var sum uint32
	src, dst := s.Src.Addr().AsSlice(), s.Dst.Addr().AsSlice()
	sum = add(sum, src)
	sum = add(sum, dst)
	sum += 6 + uint32(len(b)) // protocol and TCP length
	sum = add(sum, b)
	binary.BigEndian.PutUint16(b[16:], fold(sum))
	return b
}

// IPv4 returns the segment in an IPv4 packet.
func (s Segment) IPv4() []byte {
	tcp := s.TCPHeader()
	ip := make([]byte, 20, 20+len(tcp))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
	ip[6] = 0x40 // don't fragment
	ip[8] = 64
	ip[9] = 6
	src, dst := s.Src.Addr().As4(), s.Dst.Addr().As4()
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[10:], fold(add(0, ip)))
	return append(ip, tcp...)
}

// Ext is an IPv6 extension header.
type Ext struct {
	Type uint8
	// FragmentOffset in 8-byte units, for Fragment headers.
	FragmentOffset uint16
}

// IPv6 returns the segment in an IPv6 packet behind the given extension
// headers.
func (s Segment) IPv6(exts ...Ext) []byte {
	tcp := s.TCPHeader()
	var chain []byte
	for i, e := range exts {
		next := uint8(6)
		if i+1 < len(exts) {
			next = exts[i+1].Type
		}
		var h []byte
		switch e.Type {
		case Fragment:
			h = make([]byte, 8)
			binary.BigEndian.PutUint16(h[2:], e.FragmentOffset<<3)
		case AuthHeader:
			h = make([]byte, 16) // 4-byte units minus 2: length field 2
			h[1] = 2
		default:
			h = make([]byte, 8) // 8-byte units minus 1: length field 0
			h[2] = 1            // PadN option filling the rest
			h[3] = 4
		}
		h[0] = next
		chain = append(chain, h...)
	}
	ip := make([]byte, 40, 40+len(chain)+len(tcp))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(chain)+len(tcp)))
	ip[6] = 6
	if len(exts) > 0 {
		ip[6] = exts[0].Type
	}
	ip[7] = 64
	src, dst := s.Src.Addr().As16(), s.Dst.Addr().As16()
	copy(ip[8:], src[:])
	copy(ip[24:], dst[:])
	return append(append(ip, chain...), tcp...)
}

// Ethernet puts an IP packet in an Ethernet frame, as BPF_PROG_TEST_RUN
// wants it.
func Ethernet(ip []byte) []byte {
	f := make([]byte, 14, 14+len(ip))
	etherType := uint16(0x0800)
	if len(ip) > 0 && ip[0]>>4 == 6 {
		etherType = 0x86dd
	}
	binary.BigEndian.PutUint16(f[12:], etherType)
	return append(f, ip...)
}

func add(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
