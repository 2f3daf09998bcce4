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

	binary.BigEndian.PutUint16(b[16:], checksum(s.Src.Addr(), s.Dst.Addr(), protoTCP, b))
	return b
}

// IPv4 returns the segment in an IPv4 packet.
func (s Segment) IPv4() []byte { return ipv4(s.Src.Addr(), s.Dst.Addr(), protoTCP, s.TCPHeader()) }

// IPv6 returns the segment in an IPv6 packet behind the given extension
// headers.
func (s Segment) IPv6(exts ...Ext) []byte {
	return ipv6(s.Src.Addr(), s.Dst.Addr(), protoTCP, s.TCPHeader(), exts...)
}

// Datagram describes a UDP datagram.
type Datagram struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// UDPHeader returns the UDP header and payload with their checksum.
func (d Datagram) UDPHeader() []byte {
	b := make([]byte, 8+len(d.Payload))
	binary.BigEndian.PutUint16(b[0:], d.Src.Port())
	binary.BigEndian.PutUint16(b[2:], d.Dst.Port())
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], d.Payload)
	binary.BigEndian.PutUint16(b[6:], checksum(d.Src.Addr(), d.Dst.Addr(), protoUDP, b))
	return b
}

// IPv4 returns the datagram in an IPv4 packet.
func (d Datagram) IPv4() []byte { return ipv4(d.Src.Addr(), d.Dst.Addr(), protoUDP, d.UDPHeader()) }

// IPv6 returns the datagram in an IPv6 packet.
func (d Datagram) IPv6() []byte { return ipv6(d.Src.Addr(), d.Dst.Addr(), protoUDP, d.UDPHeader()) }

const (
	protoTCP = 6
	protoUDP = 17
)

// checksum is the TCP/UDP checksum over the pseudo-header and l4.
func checksum(src, dst netip.Addr, proto uint8, l4 []byte) uint16 {
	sum := add(0, src.AsSlice())
	sum = add(sum, dst.AsSlice())
	sum += uint32(proto) + uint32(len(l4))
	return fold(add(sum, l4))
}

func ipv4(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	ip := make([]byte, 20, 20+len(l4))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	ip[6] = 0x40 // don't fragment
	ip[8] = 64
	ip[9] = proto
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	binary.BigEndian.PutUint16(ip[10:], fold(add(0, ip)))
	return append(ip, l4...)
}

// Ext is an IPv6 extension header.
type Ext struct {
	Type uint8
	// FragmentOffset in 8-byte units, for Fragment headers.
	FragmentOffset uint16
}

func ipv6(src, dst netip.Addr, proto uint8, l4 []byte, exts ...Ext) []byte {
	var chain []byte
	for i, e := range exts {
		next := proto
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
	ip := make([]byte, 40, 40+len(chain)+len(l4))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(chain)+len(l4)))
	ip[6] = proto
	if len(exts) > 0 {
		ip[6] = exts[0].Type
	}
	ip[7] = 64
	s16, d16 := src.As16(), dst.As16()
	copy(ip[8:], s16[:])
	copy(ip[24:], d16[:])
	return append(append(ip, chain...), l4...)
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
