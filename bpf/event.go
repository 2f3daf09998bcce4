//go:build linux

package bpf

import (
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/netflowtcpend/netflowtcpend/internal/bounded"
)

// The values of the enums below come from netflow.h, through the constants
// bpf2go generates (gen.go). The Go types are as wide as the fields of
// struct event that carry them; a C value that does not fit fails to compile.

// EndBy says which side sent the terminating segment.
type EndBy uint8

// Sides, from the kernel's enum end_by.
const (
	EndByLocal  = EndBy(netflowEndByEND_BY_LOCAL)
	EndByRemote = EndBy(netflowEndByEND_BY_REMOTE)
)

func (e EndBy) String() string {
	if e == EndByLocal {
		return "local"
	}
	return "remote"
}

// EndReason says how the connection ended for the socket.
type EndReason uint8

// Reasons, from the kernel's enum end_reason.
const (
	EndFIN     = EndReason(netflowEndReasonEND_FIN)     // its first FIN
	EndRST     = EndReason(netflowEndReasonEND_RST)     // its first RST
	EndTimeout = EndReason(netflowEndReasonEND_TIMEOUT) // no FIN or RST: connect, retransmission or keepalive timeout
	EndAbort   = EndReason(netflowEndReasonEND_ABORT)   // no FIN or RST: another error (ICMP, ss -K)
	EndClosed  = EndReason(netflowEndReasonEND_CLOSED)  // no FIN or RST: closed before anything was sent
)

func (r EndReason) String() string {
	switch r {
	case EndFIN:
		return "fin"
	case EndRST:
		return "rst"
	case EndTimeout:
		return "timeout"
	case EndAbort:
		return "abort"
	case EndClosed:
		return "closed"
	default:
		return "unknown"
	}
}

// Event flags (Event.Flags).
const (
	// An earlier end record of the socket could not be written (ring
	// buffer full); this one is the retry, from a later FIN, RST or close.
	FlagRetried = uint32(netflowEventFlagsEVENT_F_RETRIED)
	// The kernel could not allocate socket storage: no once-only guard,
	// the direction and start time are unknown.
	FlagNoStorage = uint32(netflowEventFlagsEVENT_F_NO_STORAGE)
)

// RecordType is the first byte of every ring buffer record.
type RecordType uint8

// Record types, from the kernel's enum record_type.
const (
	RecordTCPEnd = RecordType(netflowRecordTypeRECORD_TCP_END) // an Event
	RecordDNS    = RecordType(netflowRecordTypeRECORD_DNS)     // a DNSMessage
)

// Address families of struct event and struct dns_event.
const (
	familyIPv4 = uint8(netflowFamilyFAMILY_IPV4)
	familyIPv6 = uint8(netflowFamilyFAMILY_IPV6)
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
	TimeNs   uint64 // CLOCK_MONOTONIC of the end
	StartNs  uint64 // CLOCK_MONOTONIC of the handshake; 0 when not observed
	Cookie   uint64
	CgroupID uint64
	Netns    uint32 // inode of the network namespace; 0 when unknown
	// Source sent the terminating segment (the local side for ends without
	// one), Destination received it. IPv4 traffic, also of dual-stack IPv6
	// sockets, has IPv4 addresses.
	Source      netip.AddrPort
	Destination netip.AddrPort
	Direction   Direction
	EndBy       EndBy
	EndReason   EndReason
	State       uint8  // TCP state before the end
	Error       uint16 // errno the kernel ended the socket with, or 0
	Flags       uint32

	SRTTMicros    uint32
	BytesSent     uint64 // payload bytes, each once
	BytesReceived uint64 // payload bytes received in order
	SegsSent      uint32
	SegsReceived  uint32
	Retransmits   uint32

	// The process that created the connecting socket, or that first sent
	// or read on the accepted one; 0 and "" when unknown.
	PID        uint32
	Executable string
}

// TCP states that mean the handshake never completed.
const (
	stateSynSent = 2
	stateSynRecv = 3
)

// Established reports whether the connection was ever established: a
// refused or timed-out connect was not.
func (e *Event) Established() bool { return e.State != stateSynSent && e.State != stateSynRecv }

// Decode parses one ring buffer record.
func (e *Event) Decode(b []byte) error { return e.DecodeInterned(b, nil) }

// Interner hands out one string per executable name, so that decoding a
// record allocates nothing for a name seen before. Not safe for concurrent
// use; the zero Interner keeps no names.
type Interner struct {
	names bounded.Map[string, string]
}

// maxInterned bounds an Interner; it starts over when full.
const maxInterned = 4096

// NewInterner returns an Interner of up to maxInterned names.
func NewInterner() *Interner {
	return &Interner{names: bounded.NewMap[string, string](maxInterned)}
}

func (in *Interner) str(b []byte) string {
	if in == nil || len(b) == 0 {
		return string(b)
	}
	// The lookup does not keep its key: no allocation for it.
	if s, ok := in.names.Get(unsafe.String(&b[0], len(b))); ok {
		return s
	}
	s := string(b)
	in.names.Put(s, s)
	return s
}

// DecodeInterned parses one ring buffer record, taking executable names
// from in.
func (e *Event) DecodeInterned(b []byte, in *Interner) error {
	if len(b) < EventSize {
		return fmt.Errorf("record of %d bytes, want %d", len(b), EventSize)
	}
	if t := TypeOf(b); t != RecordTCPEnd {
		return fmt.Errorf("record type %d is not a connection end", t)
	}
	// Copy into the type bpf2go generated from netflow.h: the layout is
	// the C one by construction.
	var r netflowEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), EventSize), b)
	src, dst, err := addrs(r.Family, r.Saddr[:], r.Daddr[:])
	if err != nil {
		return err
	}
	*e = Event{
		TimeNs: r.TimeNs, StartNs: r.StartNs, Cookie: r.Cookie, CgroupID: r.CgroupId, Netns: r.Netns,
		Source:      netip.AddrPortFrom(src, r.Sport),
		Destination: netip.AddrPortFrom(dst, r.Dport),
		Direction:   Direction(r.Direction), EndBy: EndBy(r.EndBy), EndReason: EndReason(r.EndReason),
		State: r.State, Error: r.Error, Flags: r.Flags,
		SRTTMicros: r.SrttUs, BytesSent: r.BytesSent, BytesReceived: r.BytesReceived,
		SegsSent: r.SegsSent, SegsReceived: r.SegsReceived, Retransmits: r.Retransmits,
		PID: r.Pid,
	}
	if r.Pid != 0 {
		// NUL-terminated: at most EXE_LEN-1 bytes, even in a record
		// that lacks the NUL.
		e.Executable = in.str(cBytes(r.Exe[:len(r.Exe)-1]))
	}
	if e.EndBy != EndByLocal && e.EndBy != EndByRemote {
		return fmt.Errorf("unknown end side %d", e.EndBy)
	}
	if e.EndReason < EndFIN || e.EndReason > EndClosed {
		return fmt.Errorf("unknown end reason %d", e.EndReason)
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
	var h netflowDnsEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), DNSHeaderSize), b)
	src, dst, err := addrs(h.Family, h.Saddr[:], h.Daddr[:])
	if err != nil {
		return err
	}
	n := int(h.PayloadLen)
	if n > len(b)-DNSHeaderSize {
		return fmt.Errorf("DNS record says %d payload bytes, has %d", n, len(b)-DNSHeaderSize)
	}
	switch h.Protocol {
	case 6, 17:
	default:
		return fmt.Errorf("DNS record over protocol %d", h.Protocol)
	}
	*m = DNSMessage{
		TimeNs: h.TimeNs, Cookie: h.Cookie, Netns: h.Netns,
		Source:      netip.AddrPortFrom(src, h.Sport),
		Destination: netip.AddrPortFrom(dst, h.Dport),
		TCP:         h.Protocol == 6, Egress: h.Egress != 0,
		WireLen: int(h.WireLen), Payload: b[DNSHeaderSize : DNSHeaderSize+n],
	}
	return nil
}

// cBytes returns the NUL-terminated string in b.
func cBytes(b []int8) []byte {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// addrs returns the addresses as on the wire: IPv4-mapped IPv6 addresses
// (of dual-stack sockets, read from the socket at a timeout) are unmapped.
func addrs(family byte, src, dst []byte) (netip.Addr, netip.Addr, error) {
	switch family {
	case familyIPv4:
		return netip.AddrFrom4([4]byte(src[:4])), netip.AddrFrom4([4]byte(dst[:4])), nil
	case familyIPv6:
		return netip.AddrFrom16([16]byte(src)).Unmap(), netip.AddrFrom16([16]byte(dst)).Unmap(), nil
	default:
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("unknown address family %d", family)
	}
}
