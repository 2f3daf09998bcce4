//go:build linux

package receiver

import (
	"crypto/tls"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testhello"
)

func TestTLSNames(t *testing.T) {
	hello := testhello.Hello{ServerName: "www.example.com", KeyShareLen: 1216, ServerNameLast: true}.Bytes()
	client := netip.MustParseAddrPort("10.0.0.1:40000")
	server := netip.MustParseAddrPort("10.0.0.2:443")
	const netns = 4026531840
	piece := func(cookie uint64, egress, listener bool, off, end int) *bpf.TLSPiece {
		return &bpf.TLSPiece{Cookie: cookie, Egress: egress, Listener: listener, Netns: netns, Source: client, Destination: server,
			Offset: off, Limit: len(hello), Payload: hello[off:end]}
	}
	// The end of a socket: the client's (outgoing, its FIN) or the server's.
	end := func(cookie uint64, isClient bool) *bpf.Event {
		e := &bpf.Event{Cookie: cookie, Netns: netns, Source: client, Destination: server, EndBy: bpf.EndByLocal}
		if !isClient {
			e.EndBy = bpf.EndByRemote
		}
		return e
	}
	n := len(hello)
	tests := []struct {
		name   string
		pieces []*bpf.TLSPiece
		end    *bpf.Event
		want   tlsName
		ok     bool
	}{
		{"client, whole", []*bpf.TLSPiece{piece(1, true, false, 0, n)}, end(1, true), tlsName{"www.example.com", true}, true},
		{"server, in three pieces out of order", []*bpf.TLSPiece{piece(2, false, false, 600, 1200), piece(2, false, false, 0, 600),
			piece(2, false, false, 1200, n)}, end(2, false), tlsName{"www.example.com", false}, true},
		{"repeats", []*bpf.TLSPiece{piece(3, true, false, 0, n), piece(3, true, false, 0, n)}, end(3, true),
			tlsName{"www.example.com", true}, true},
		{"another socket's", []*bpf.TLSPiece{piece(4, true, false, 0, n)}, end(5, true), tlsName{}, false},
		{"incomplete", []*bpf.TLSPiece{piece(6, true, false, 0, 600)}, end(6, true), tlsName{}, false},
		{"Fast Open, whole in the SYN", []*bpf.TLSPiece{piece(99, false, true, 0, n)}, end(7, false), tlsName{"www.example.com", false}, true},
		{"Fast Open, the rest after the SYN", []*bpf.TLSPiece{piece(99, false, true, 0, 500), piece(8, false, false, 500, n)}, end(8, false),
			tlsName{"www.example.com", false}, true},
		{"Fast Open, not this connection", []*bpf.TLSPiece{piece(99, false, true, 0, n)}, end(9, true), tlsName{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			names := newTLSNames()
			for _, p := range tt.pieces {
				names.observe(p)
			}
			got, ok := names.take(tt.end)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
			// Taken once.
			_, ok = names.take(tt.end)
			assert.False(t, ok)
			assert.False(t, names.names.Contains(tt.end.Cookie) || names.pending.Contains(tt.end.Cookie), "the socket is forgotten")
		})
	}
}

func TestTLSNamesNotTLS(t *testing.T) {
	names := newTLSNames()
	garbage := append([]byte{22, 3, 1, 0, 60, 1, 0, 0, 56}, make([]byte, 56)...)
	names.observe(&bpf.TLSPiece{Cookie: 1, Egress: true, Limit: len(garbage), Payload: garbage})
	_, ok := names.take(&bpf.Event{Cookie: 1, EndBy: bpf.EndByLocal})
	assert.False(t, ok)
	assert.Zero(t, names.names.Len())
}

// Open connections beyond the bound: the oldest lose their names, and the
// maps stay within their bounds.
func TestTLSNamesBounded(t *testing.T) {
	names := newTLSNames()
	hello := testhello.Hello{ServerName: "a.example"}.Bytes()
	for c := range uint64(maxTLSNames + 10) {
		names.observe(&bpf.TLSPiece{Cookie: c, Egress: true, Limit: len(hello), Payload: hello})
		names.observe(&bpf.TLSPiece{Cookie: c + 1<<40, Egress: true, Limit: len(hello), Payload: hello[:10]})
	}
	require.Equal(t, maxTLSNames, names.names.Len())
	require.Equal(t, maxTLSPending, names.pending.Len())
	_, ok := names.take(&bpf.Event{Cookie: 0})
	assert.False(t, ok, "the oldest was evicted")
	n, ok := names.take(&bpf.Event{Cookie: maxTLSNames + 9})
	assert.True(t, ok)
	assert.Equal(t, "a.example", n.name)
}

// BenchmarkTLSNames is what a TLS connection's socket costs the read loop:
// its ClientHello's record decoded and joined into the name, which its end
// record takes.
func BenchmarkTLSNames(b *testing.B) {
	hello, err := testhello.Capture(&tls.Config{ServerName: "www.example.com"})
	require.NoError(b, err)
	piece := bpf.TLSPiece{Egress: true, Source: netip.MustParseAddrPort("10.0.0.1:40000"),
		Destination: netip.MustParseAddrPort("93.184.216.34:443"), Limit: len(hello), Payload: hello}
	raw := piece.Encode()
	names := newTLSNames()
	var p bpf.TLSPiece
	e := bpf.Event{EndBy: bpf.EndByLocal}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU(b)
	for i := range b.N {
		require.NoError(b, p.Decode(raw))
		p.Cookie = uint64(i)
		names.observe(&p)
		e.Cookie = uint64(i)
		if n, ok := names.take(&e); !ok || n.name != "www.example.com" {
			b.Fatalf("name %q", n.name)
		}
	}
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
}
