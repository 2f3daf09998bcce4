// Package testhello makes TLS ClientHellos for tests: real ones from Go's
// crypto/tls, and built ones whose size, extension order, server name and
// record boundaries a test chooses (browsers' post-quantum key shares,
// randomized extension order, a ClientHello split over several records).
package testhello

import (
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Capture returns the first bytes a crypto/tls client with cfg sends: its
// ClientHello, in one or more records as crypto/tls writes them.
func Capture(cfg *tls.Config) ([]byte, error) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	done := make(chan error, 1)
	go func() {
		c := tls.Client(client, cfg)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		done <- c.Handshake()
	}()
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	// The ClientHello is one Write; net.Pipe hands it over in reads of
	// at most len(buf).
	n, err := server.Read(buf)
	if err != nil {
		return nil, err
	}
	server.Close()
	if err := <-done; err == nil {
		return nil, errors.New("the handshake completed with no server")
	}
	if n == 0 {
		return nil, errors.New("client sent nothing")
	}
	return buf[:n], nil
}

// Extension is one ClientHello extension.
type Extension struct {
	Type uint16
	Data []byte
}

// Hello describes a built ClientHello.
type Hello struct {
	// ServerName is the host_name of the server_name extension; with
	// NoServerName, none is sent.
	ServerName   string
	NoServerName bool
	// KeyShareLen is the size of one key share (1216 for X25519MLKEM768's,
	// as browsers send: the ClientHello then passes 1,500 bytes).
	KeyShareLen int
	// ServerNameLast puts server_name after every other extension (else
	// first); Shuffle orders them at random with this seed, as Chrome does.
	ServerNameLast bool
	Shuffle        uint64
	// Padding adds a padding extension of this many bytes.
	Padding int
	// RecordLen splits the handshake message into records of at most this
	// many bytes (0: one record).
	RecordLen int
	// SessionID is the legacy_session_id (32 bytes in TLS 1.3's middlebox
	// compatibility mode).
	SessionID []byte
	// More are further extensions.
	More []Extension
}

// Extension types.
const (
	ExtServerName        = 0
	ExtSupportedGroups   = 10
	ExtSignatureAlgs     = 13
	ExtALPN              = 16
	ExtPadding           = 21
	ExtSupportedVersions = 43
	ExtKeyShare          = 51
)

// Bytes returns the ClientHello in TLS records as a client sends it.
func (h Hello) Bytes() []byte {
	var exts []Extension
	if !h.NoServerName {
		var b cryptobyte.Builder
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint8(0) // host_name
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(h.ServerName)) })
		})
		exts = append(exts, Extension{ExtServerName, b.BytesOrPanic()})
	}
	others := []Extension{
		{ExtSupportedGroups, []byte{0, 4, 0x11, 0xec, 0, 0x1d}}, // X25519MLKEM768, X25519
		{ExtSignatureAlgs, []byte{0, 4, 4, 3, 8, 4}},
		{ExtALPN, []byte{0, 3, 2, 'h', '2'}},
		{ExtSupportedVersions, []byte{4, 3, 4, 3, 3}}, // TLS 1.3, 1.2
	}
	if h.KeyShareLen > 0 {
		var b cryptobyte.Builder
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(0x11ec)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, h.KeyShareLen)) })
		})
		others = append(others, Extension{ExtKeyShare, b.BytesOrPanic()})
	}
	others = append(others, h.More...)
	if h.Padding > 0 {
		others = append(others, Extension{ExtPadding, make([]byte, h.Padding)})
	}
	if h.ServerNameLast {
		exts = append(others, exts...)
	} else {
		exts = append(exts, others...)
	}
	if h.Shuffle != 0 {
		r := rand.New(rand.NewPCG(h.Shuffle, h.Shuffle))
		r.Shuffle(len(exts), func(i, j int) { exts[i], exts[j] = exts[j], exts[i] })
	}

	var body cryptobyte.Builder
	body.AddUint16(0x0303)
	body.AddBytes(make([]byte, 32)) // random
	body.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.SessionID) })
	body.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x1301); b.AddUint16(0xc02f) })
	body.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
	body.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, e := range exts {
			b.AddUint16(e.Type)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Data) })
		}
	})
	var msg cryptobyte.Builder
	msg.AddUint8(1) // client_hello
	msg.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(body.BytesOrPanic()) })
	return Records(msg.BytesOrPanic(), h.RecordLen)
}

// Records puts a handshake message into handshake records of at most
// recordLen bytes each (0: one record).
func Records(msg []byte, recordLen int) []byte {
	if recordLen <= 0 {
		recordLen = len(msg)
	}
	var out []byte
	for len(msg) > 0 {
		n := min(recordLen, len(msg))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}
