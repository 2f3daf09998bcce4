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

// EventSize is the size of struct event in bytes.
const EventSize = int(unsafe.Sizeof(netflowEvent{}))

// Event is one ended connection as one local socket saw it.
type Event struct {
	TimeNs   uint64 // CLOCK_MONOTONIC of the terminating segment
	StartNs  uint64 // CLOCK_MONOTONIC of the handshake; 0 when not observed
	Cookie   uint64
	CgroupID uint64
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
	le := binary.LittleEndian
	e.TimeNs = le.Uint64(b[0:])
	e.StartNs = le.Uint64(b[8:])
	e.Cookie = le.Uint64(b[16:])
	e.CgroupID = le.Uint64(b[24:])
	sport, dport := le.Uint16(b[64:]), le.Uint16(b[66:])
	var src, dst netip.Addr
	switch family := b[68]; family {
	case 4:
		src = netip.AddrFrom4([4]byte(b[32:36]))
		dst = netip.AddrFrom4([4]byte(b[48:52]))
	case 6:
		src = netip.AddrFrom16([16]byte(b[32:48]))
		dst = netip.AddrFrom16([16]byte(b[48:64]))
	default:
		return fmt.Errorf("unknown address family %d", family)
	}
	e.Source = netip.AddrPortFrom(src, sport)
	e.Destination = netip.AddrPortFrom(dst, dport)
	e.Direction = Direction(b[69])
	e.EndBy = EndBy(b[70])
	e.EndFlag = EndFlag(b[71])
	e.Flags = le.Uint32(b[72:])
	if e.EndBy != EndByLocal && e.EndBy != EndByRemote {
		return fmt.Errorf("unknown end side %d", e.EndBy)
	}
	if e.EndFlag != EndFlagFIN && e.EndFlag != EndFlagRST {
		return fmt.Errorf("unknown end flag %d", e.EndFlag)
	}
	return nil
}
