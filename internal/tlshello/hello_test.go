package tlshello

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testhello"
)

func capture(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	b, err := testhello.Capture(cfg)
	require.NoError(t, err)
	return b
}

func TestServerName(t *testing.T) {
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) // 255
	tests := []struct {
		name   string
		stream []byte
		want   string
		err    error
	}{
		{"crypto/tls, TLS 1.3", capture(t, &tls.Config{ServerName: "www.example.com", MinVersion: tls.VersionTLS13}), "www.example.com", nil},
		{"crypto/tls, TLS 1.2", capture(t, &tls.Config{ServerName: "api.example.com", MaxVersion: tls.VersionTLS12}), "api.example.com", nil},
		{"crypto/tls, post-quantum key share", capture(t, &tls.Config{ServerName: "pq.example.com",
			CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}}), "pq.example.com", nil},
		{"crypto/tls to an IP literal sends no name", capture(t, &tls.Config{ServerName: "192.0.2.1"}), "", nil},
		{"built, name first", testhello.Hello{ServerName: "a.example"}.Bytes(), "a.example", nil},
		{"built, name last behind a post-quantum key share", testhello.Hello{ServerName: "b.example", KeyShareLen: 1216,
			ServerNameLast: true}.Bytes(), "b.example", nil},
		{"built, shuffled", testhello.Hello{ServerName: "c.example", KeyShareLen: 1216, Shuffle: 7, Padding: 300}.Bytes(), "c.example", nil},
		{"built, in records of 100 bytes", testhello.Hello{ServerName: "d.example", KeyShareLen: 1216, ServerNameLast: true,
			RecordLen: 100}.Bytes(), "d.example", nil},
		{"built, in records of 1 byte", testhello.Hello{ServerName: "e.example", RecordLen: 1}.Bytes(), "e.example", nil},
		{"built, no server name", testhello.Hello{NoServerName: true, KeyShareLen: 32}.Bytes(), "", nil},
		{"built, name of 255 bytes", testhello.Hello{ServerName: long}.Bytes(), long, nil},
		{"built, name of 256 bytes", testhello.Hello{ServerName: long + "e"}.Bytes(), "", ErrBadName},
		{"built, empty name", testhello.Hello{ServerName: ""}.Bytes(), "", ErrBadName},
		{"built, name with a space", testhello.Hello{ServerName: "a b"}.Bytes(), "", ErrBadName},
		{"built, name with a NUL", testhello.Hello{ServerName: "a\x00b"}.Bytes(), "", ErrBadName},
		{"with early data behind it", append(testhello.Hello{ServerName: "f.example"}.Bytes(), 23, 3, 3, 0, 5, 1, 2, 3, 4, 5), "f.example", nil},
		{"plaintext HTTP", []byte("GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n"), "", ErrNotClientHello},
		{"SSH banner", []byte("SSH-2.0-OpenSSH_9.2\r\n"), "", ErrNotClientHello},
		{"TLS application data", []byte{23, 3, 3, 0, 2, 1, 2}, "", ErrNotClientHello},
		{"a ServerHello", []byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, "", ErrNotClientHello},
		{"record of length 0", []byte{22, 3, 1, 0, 0, 1}, "", ErrNotClientHello},
		{"record longer than TLS allows", []byte{22, 3, 1, 0x40, 1, 1}, "", ErrNotClientHello},
		{"record version 4.0", []byte{22, 4, 0, 0, 4, 1, 0, 0, 0}, "", ErrNotClientHello},
		{"empty", nil, "", ErrTruncated},
		{"one byte", []byte{22}, "", ErrTruncated},
		{"a record header alone", []byte{22, 3, 1, 2, 0}, "", ErrTruncated},
		{"garbage that starts like TLS", append([]byte{22, 3, 1, 0, 60, 1, 0, 0, 56}, make([]byte, 56)...), "", ErrMalformed},
		{"handshake length 0", []byte{22, 3, 1, 0, 4, 1, 0, 0, 0}, "", ErrMalformed},
		{"other record type inside the hello", append(testhello.Records(testhello.Hello{ServerName: "x.example"}.Bytes()[5:25], 0),
			23, 3, 3, 0, 1, 0), "", ErrNotClientHello},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ServerName(tt.stream)
			assert.Equal(t, tt.want, got)
			if tt.err == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tt.err)
			}
		})
	}
}

// A ClientHello cut at every offset: the name once the server_name
// extension is whole, ErrTruncated before; never another answer.
func TestServerNameTruncated(t *testing.T) {
	for _, h := range []testhello.Hello{
		{ServerName: "first.example", KeyShareLen: 1216},
		{ServerName: "last.example", KeyShareLen: 1216, ServerNameLast: true, RecordLen: 700},
		{NoServerName: true, KeyShareLen: 64},
	} {
		full := h.Bytes()
		name, err := ServerName(full)
		require.NoError(t, err)
		require.Equal(t, h.ServerName, name)
		found := false
		for n := range len(full) {
			got, err := ServerName(full[:n])
			if err == nil {
				require.Equal(t, h.ServerName, got, "cut at %d", n)
				require.NotEmpty(t, got, "cut at %d: no name is only known from a complete ClientHello", n)
				found = true
				continue
			}
			require.ErrorIs(t, err, ErrTruncated, "cut at %d", n)
			require.False(t, found, "cut at %d: the name was found in a shorter prefix", n)
		}
	}
}

// Lengths that lie inside an otherwise real ClientHello: every byte of a
// real one set to 0 and 0xff in turn gives a name, none, or an error, and
// a name only when it is a valid one.
func TestServerNameMalformed(t *testing.T) {
	base := capture(t, &tls.Config{ServerName: "www.example.com"})
	for i := range base {
		for _, v := range []byte{0, 0xff, base[i] + 1} {
			b := append([]byte(nil), base...)
			b[i] = v
			name, err := ServerName(b)
			if err != nil {
				assert.Empty(t, name)
				continue
			}
			if name != "" {
				assert.True(t, validHostName([]byte(name)), "byte %d = %#x: name %q", i, v, name)
			}
		}
	}
}
