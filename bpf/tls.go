//go:build linux

package bpf

import (
	"fmt"
	"net/netip"
	"unsafe"
)

// RecordTLS is a piece of the first bytes of a connection that starts like
// a TLS ClientHello (a TLSPiece), from tls.h.
const RecordTLS = RecordType(netflowRecordTypeRECORD_TLS)

// TLSHeaderSize is the size of struct tls_event, which precedes the bytes.
const TLSHeaderSize = int(unsafe.Sizeof(netflowTlsEvent{}))

// TLSPiece is a piece of the first bytes of one side of a connection that
// starts like a TLS ClientHello: the bytes of one TCP segment, as a socket
// sent them (Egress: it is the TLS client) or received them.
type TLSPiece struct {
	TimeNs uint64 // CLOCK_MONOTONIC
	// The socket that sent or received it; with Listener, the listener
	// that a SYN with data (TCP Fast Open) arrived at, before the accepted
	// socket existed: Netns, Source and Destination then name the
	// connection.
	Cookie      uint64
	Listener    bool
	Netns       uint32
	Source      netip.AddrPort
	Destination netip.AddrPort
	Egress      bool
	// Offset is where Payload lies in the stream (0: at its first byte);
	// Limit is how many bytes of the stream the kernel copies at most.
	Offset, Limit int
	// Payload aliases the record's buffer: copy what outlives the record.
	Payload []byte
}

// Decode parses one ring buffer record. It allocates nothing.
func (p *TLSPiece) Decode(b []byte) error {
	if len(b) < TLSHeaderSize {
		return fmt.Errorf("TLS record of %d bytes, want at least %d", len(b), TLSHeaderSize)
	}
	if t := TypeOf(b); t != RecordTLS {
		return fmt.Errorf("record type %d is not TLS", t)
	}
	var h netflowTlsEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), TLSHeaderSize), b)
	src, dst, err := addrs(h.Family, h.Saddr[:], h.Daddr[:])
	if err != nil {
		return err
	}
	n := int(h.PayloadLen)
	if n > len(b)-TLSHeaderSize {
		return fmt.Errorf("TLS record says %d payload bytes, has %d", n, len(b)-TLSHeaderSize)
	}
	if h.Limit > MaxTLSHello || int(h.Offset)+n > int(h.Limit) {
		return fmt.Errorf("TLS record of bytes %d to %d past its limit %d", h.Offset, int(h.Offset)+n, h.Limit)
	}
	*p = TLSPiece{
		TimeNs: h.TimeNs, Cookie: h.Cookie, Listener: h.Listener != 0, Netns: h.Netns,
		Source:      netip.AddrPortFrom(src, h.Sport),
		Destination: netip.AddrPortFrom(dst, h.Dport),
		Egress:      h.Egress != 0,
		Offset:      int(h.Offset), Limit: int(h.Limit),
		Payload: b[TLSHeaderSize : TLSHeaderSize+n],
	}
	return nil
}
