package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"
)

// Direction is the local socket's role in the connection.
type Direction uint8

const (
	DirectionUnknown  Direction = 0 // the handshake was not observed
	DirectionIncoming Direction = 1 // accepted from a listener
	DirectionOutgoing Direction = 2 // the socket sent the SYN
)

func (d Direction) String() string {
	switch d {
	case DirectionIncoming:
		return "incoming"
	case DirectionOutgoing:
		return "outgoing"
	default:
		return "unknown"
	}
}

// EndBy says which side sent the terminating segment.
type EndBy uint8

const (
	EndByLocal  EndBy = 1
	EndByRemote EndBy = 2
)

func (e EndBy) String() string {
	if e == EndByLocal {
		return "local"
	}
	return "remote"
}

// EndFlag is the TCP flag that ended the connection.
type EndFlag uint8

const (
	EndFlagFIN EndFlag = 1
	EndFlagRST EndFlag = 2
)

func (f EndFlag) String() string {
	if f == EndFlagRST {
		return "RST"
	}
	return "FIN"
}

// Event flags, from struct event in netflow.h.
const (
	FlagRetried   uint32 = 1 << 0
	FlagNoStorage uint32 = 1 << 1
)

// RecordType is the first byte of every ring buffer record.
type RecordType uint8

const (
	RecordTCPEnd RecordType = 1 // an Event
	RecordDNS    RecordType = 2 // a DNSMessage
)

// TypeOf returns the type of a raw ring buffer record.
func TypeOf(raw []byte) RecordType {
	if len(raw) == 0 {
		return 0
	}
	return RecordType(raw[0])
}

// EventSize is the size of struct event in bytes.
const EventSize = int(unsafe.Sizeof(netflowEvent{}))

// Event is one ended connection as one local socket saw it.
type Event struct {
	TimeNs   uint64 // CLOCK_MONOTONIC of the terminating segment
	StartNs  uint64 // CLOCK_MONOTONIC of the handshake; 0 when not observed
	Cookie   uint64
	CgroupID uint64
	Netns    uint32 // inode of the network namespace; 0 when unknown
	// Source sent the terminating segment, Destination received it. IPv4
	// traffic (also of dual-stack IPv6 sockets) has IPv4 addresses.
	Source      netip.AddrPort
	Destination netip.AddrPort
	Direction   Direction
	EndBy       EndBy
	EndFlag     EndFlag
	Flags       uint32
}

// Decode parses one ring buffer record. It allocates nothing.
func (e *Event) Decode(b []byte) error {
	if len(b) < EventSize {
		return fmt.Errorf("record of %d bytes, want %d", len(b), EventSize)
	}
	if t := TypeOf(b); t != RecordTCPEnd {
		return fmt.Errorf("record type %d is not a connection end", t)
	}
	le := binary.LittleEndian
	src, dst, err := addrs(b[1], b[48:64], b[64:80])
	if err != nil {
		return err
	}
	e.Source = netip.AddrPortFrom(src, le.Uint16(b[80:]))
	e.Destination = netip.AddrPortFrom(dst, le.Uint16(b[82:]))
	e.Direction = Direction(b[2])
	e.EndBy = EndBy(b[3])
	e.EndFlag = EndFlag(b[4])
	e.Flags = le.Uint32(b[8:])
	e.Netns = le.Uint32(b[12:])
	e.TimeNs = le.Uint64(b[16:])
	e.StartNs = le.Uint64(b[24:])
	e.Cookie = le.Uint64(b[32:])
	e.CgroupID = le.Uint64(b[40:])
	if e.EndBy != EndByLocal && e.EndBy != EndByRemote {
		return fmt.Errorf("unknown end side %d", e.EndBy)
	}
	if e.EndFlag != EndFlagFIN && e.EndFlag != EndFlagRST {
		return fmt.Errorf("unknown end flag %d", e.EndFlag)
	}
	return nil
}

// DNSHeaderSize is the size of struct dns_event, which precedes the payload.
const DNSHeaderSize = int(unsafe.Sizeof(netflowDnsEvent{}))

// DNSMessage is a DNS message that a monitored socket sent to port 53 or
// received from it.
type DNSMessage struct {
	TimeNs      uint64 // CLOCK_MONOTONIC
	Cookie      uint64 // the socket that sent or received it
	Netns       uint32
	Source      netip.AddrPort
	Destination netip.AddrPort
	TCP         bool // TCP: Payload is a segment's payload with length prefixes
	Egress      bool // sent by the socket (a query), else received (an answer)
	WireLen     int  // payload bytes on the wire; more than len(Payload): truncated
	// Payload aliases the record's buffer: copy what outlives the record.
	Payload []byte
}

// Decode parses one ring buffer record. It allocates nothing.
func (m *DNSMessage) Decode(b []byte) error {
	if len(b) < DNSHeaderSize {
		return fmt.Errorf("DNS record of %d bytes, want at least %d", len(b), DNSHeaderSize)
	}
	if t := TypeOf(b); t != RecordDNS {
		return fmt.Errorf("record type %d is not DNS", t)
	}
	le := binary.LittleEndian
	src, dst, err := addrs(b[1], b[32:48], b[48:64])
	if err != nil {
		return err
	}
	n := int(le.Uint32(b[8:]))
	if n > len(b)-DNSHeaderSize {
		return fmt.Errorf("DNS record says %d payload bytes, has %d", n, len(b)-DNSHeaderSize)
	}
	switch b[2] {
	case 6:
		m.TCP = true
	case 17:
		m.TCP = false
	default:
		return fmt.Errorf("DNS record over protocol %d", b[2])
	}
	m.Egress = b[3] != 0
	m.Netns = le.Uint32(b[4:])
	m.WireLen = int(le.Uint32(b[12:]))
	m.TimeNs = le.Uint64(b[16:])
	m.Cookie = le.Uint64(b[24:])
	m.Source = netip.AddrPortFrom(src, le.Uint16(b[64:]))
	m.Destination = netip.AddrPortFrom(dst, le.Uint16(b[66:]))
	m.Payload = b[DNSHeaderSize : DNSHeaderSize+n]
	return nil
}

func addrs(family byte, src, dst []byte) (netip.Addr, netip.Addr, error) {
	switch family {
	case 4:
		return netip.AddrFrom4([4]byte(src[:4])), netip.AddrFrom4([4]byte(dst[:4])), nil
	case 6:
		return netip.AddrFrom16([16]byte(src)), netip.AddrFrom16([16]byte(dst)), nil
	default:
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("unknown address family %d", family)
	}
}
