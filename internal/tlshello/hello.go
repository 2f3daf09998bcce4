// Package tlshello finds the server name (SNI) that a TLS client sends in
// its ClientHello, from the first bytes of the client's side of a TCP
// connection as the kernel programs copy them (bpf/tls.h), which may arrive
// in pieces and be cut short.
//
// The parse follows RFC 8446 section 4.1.2 (the ClientHello of TLS 1.3 and,
// with the same layout, of TLS 1.0 to 1.2) and RFC 6066 section 3 (the
// server_name extension). Structures are read with cryptobyte, the parser
// the Go standard library's crypto/tls uses: every length is checked
// against the bytes there are.
package tlshello

import (
	"errors"

	"golang.org/x/crypto/cryptobyte"
)

// Errors of ServerName. ErrTruncated alone means that more bytes of the
// stream could still give an answer.
var (
	ErrTruncated      = errors.New("the ClientHello continues past the bytes given")
	ErrNotClientHello = errors.New("not a TLS handshake starting with a ClientHello")
	ErrMalformed      = errors.New("malformed ClientHello")
	ErrBadName        = errors.New("server name is not a host name of 1 to 255 printable ASCII bytes")
)

// MaxNameLen is the longest server name taken: a DNS name's 255 bytes
// (RFC 1035). RFC 6066 allows longer ones, which no DNS name can be.
const MaxNameLen = 255

// TLS wire values.
const (
	recordHeaderLen     = 5
	recordTypeHandshake = 22
	maxRecordLen        = 1 << 14 // TLSPlaintext.length (RFC 8446 5.1)
	handshakeHeaderLen  = 4
	typeClientHello     = 1
	extServerName       = 0
	nameTypeHostName    = 0
)

// ServerName returns the host name in the server_name extension of the
// ClientHello at the start of stream: the bytes a TLS client sent first on
// a connection, from the first record header on. A ClientHello may span
// several handshake records. A complete ClientHello without the extension
// gives "" and no error. Bytes after the ClientHello (early data) are
// ignored.
//
// When stream ends inside the ClientHello, the extensions that are there
// are still searched: ErrTruncated only when the name is not among them.
func ServerName(stream []byte) (string, error) {
	msg, complete, err := handshakeMessage(stream)
	if err != nil {
		return "", err
	}
	return clientHelloServerName(msg, complete)
}

// handshakeMessage joins the fragments of the first handshake message from
// the handshake records at the start of stream. It returns the message
// (header included) as far as stream holds it, and whether that is all of
// it.
func handshakeMessage(stream []byte) ([]byte, bool, error) {
	var msg []byte
	s := cryptobyte.String(stream)
	for first := true; ; first = false {
		var typ, major, minor uint8
		var fragment cryptobyte.String
		if !s.ReadUint8(&typ) || !s.ReadUint8(&major) || !s.ReadUint8(&minor) {
			return msg, false, ErrTruncated
		}
		// A ClientHello's record version is 3.0 to 3.3 (TLS 1.3 sends 3.1
		// or 3.3 there): anything else is another protocol.
		if typ != recordTypeHandshake || major != 3 || minor > 4 {
			return nil, false, ErrNotClientHello
		}
		var length uint16
		if !s.ReadUint16(&length) {
			return msg, false, ErrTruncated
		}
		if length == 0 || length > maxRecordLen {
			return nil, false, ErrNotClientHello
		}
		if !s.ReadBytes((*[]byte)(&fragment), int(length)) {
			// The record continues past the stream: take what is there.
			fragment, s = s, nil
		}
		if len(fragment) == 0 {
			return msg, false, ErrTruncated
		}
		if first && fragment[0] != typeClientHello {
			return nil, false, ErrNotClientHello
		}
		if first && len(fragment) >= handshakeHeaderLen {
			// The usual case, the whole message in one record: no copy.
			want := handshakeHeaderLen + (int(fragment[1])<<16 | int(fragment[2])<<8 | int(fragment[3]))
			if len(fragment) >= want {
				return fragment[:want], true, nil
			}
		}
		msg = append(msg, fragment...)
		if len(msg) >= handshakeHeaderLen {
			want := handshakeHeaderLen + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			if len(msg) >= want {
				return msg[:want], true, nil
			}
		}
		if len(s) == 0 {
			return msg, false, ErrTruncated
		}
	}
}

// clientHelloServerName walks a ClientHello handshake message (complete or
// cut short) to its server_name extension.
func clientHelloServerName(msg []byte, complete bool) (string, error) {
	// Past the end of a message cut short, more bytes may fix what is
	// missing; in a complete one, nothing can.
	fail := ErrTruncated
	if complete {
		fail = ErrMalformed
	}
	s := cryptobyte.String(msg)
	var typ uint8
	var length uint32
	var sessionID, suites, compression cryptobyte.String
	if !s.ReadUint8(&typ) || !s.ReadUint24(&length) {
		return "", fail
	}
	if typ != typeClientHello {
		return "", ErrNotClientHello
	}
	if !s.Skip(2+32) || // legacy_version, random
		!s.ReadUint8LengthPrefixed(&sessionID) ||
		!s.ReadUint16LengthPrefixed(&suites) ||
		!s.ReadUint8LengthPrefixed(&compression) {
		return "", fail
	}
	if s.Empty() {
		if complete {
			return "", nil // a ClientHello without extensions (SSL 3.0 style)
		}
		return "", ErrTruncated
	}
	var extensions cryptobyte.String
	if complete {
		if !s.ReadUint16LengthPrefixed(&extensions) || !s.Empty() {
			return "", ErrMalformed
		}
	} else {
		var n uint16
		if !s.ReadUint16(&n) {
			return "", ErrTruncated
		}
		extensions = s // as far as there are bytes
	}
	for !extensions.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !extensions.ReadUint16(&typ) || !extensions.ReadUint16LengthPrefixed(&data) {
			return "", fail
		}
		if typ == extServerName {
			return hostName(data)
		}
	}
	if complete {
		return "", nil
	}
	return "", ErrTruncated
}

// hostName reads the host_name from the data of a server_name extension:
// a list of names of which at most one is a host name. A list without one
// gives "".
func hostName(data cryptobyte.String) (string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() {
		return "", ErrMalformed
	}
	for !list.Empty() {
		var nameType uint8
		var name cryptobyte.String
		if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) {
			return "", ErrMalformed
		}
		if nameType != nameTypeHostName {
			continue
		}
		if !validHostName(name) {
			return "", ErrBadName
		}
		return string(name), nil
	}
	return "", nil
}

// validHostName accepts what a DNS host name can be written as: 1 to 255
// printable ASCII bytes without spaces. RFC 6066 asks for the ASCII (A-label)
// form without a trailing dot; names that break only that rule are kept as
// sent, since the record shows what the client sent.
func validHostName(name []byte) bool {
	if len(name) == 0 || len(name) > MaxNameLen {
		return false
	}
	for _, c := range name {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}
