package tlshello

import (
	"crypto/tls"
	"errors"
	"testing"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testhello"
)

// FuzzServerName parses arbitrary streams whole and in two pieces given in
// the wrong order: no panic, a name only when valid, and the pieces give
// what the whole gives. make test runs it for a short while, make fuzz
// longer.
func FuzzServerName(f *testing.F) {
	for _, cfg := range []*tls.Config{
		{ServerName: "www.example.com", MinVersion: tls.VersionTLS13},
		{ServerName: "www.example.com", MaxVersion: tls.VersionTLS12},
	} {
		b, err := testhello.Capture(cfg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(100))
	}
	f.Add(testhello.Hello{ServerName: "a.example", KeyShareLen: 1216, ServerNameLast: true, RecordLen: 300}.Bytes(), uint16(1400))
	f.Add(testhello.Hello{NoServerName: true}.Bytes(), uint16(5))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint16(3))
	f.Add([]byte{22, 3, 1, 0, 60, 1, 0, 0, 56}, uint16(0))

	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		name, err := ServerName(b)
		if err != nil && name != "" {
			t.Fatalf("name %q with error %v", name, err)
		}
		if name != "" && !validHostName([]byte(name)) {
			t.Fatalf("invalid name %q", name)
		}
		if err != nil && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrNotClientHello) &&
			!errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadName) {
			t.Fatalf("unknown error %v", err)
		}
		if len(b) == 0 {
			return
		}
		s := NewStream(len(b))
		c := int(cut) % len(b)
		got, done := s.Add(c, b[c:])
		if c > 0 {
			if done {
				t.Fatalf("done without the start of the stream")
			}
			got, done = s.Add(0, b[:c])
		}
		if !done {
			t.Fatalf("not done with the whole stream up to the limit")
		}
		if got != name {
			t.Fatalf("pieces give %q, the whole %q (%v)", got, name, err)
		}
	})
}
