package tlshello

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testhello"
)

// pieces cuts b into pieces of the given sizes (the last takes the rest).
func pieces(b []byte, sizes ...int) [][]byte {
	var out [][]byte
	for _, n := range sizes {
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	if len(b) > 0 {
		out = append(out, b)
	}
	return out
}

func TestStream(t *testing.T) {
	hello := testhello.Hello{ServerName: "split.example", KeyShareLen: 1216, Padding: 300, ServerNameLast: true}.Bytes()
	require.Greater(t, len(hello), 1500)
	type piece struct {
		off int
		b   []byte
	}
	in := func(b []byte, sizes ...int) []piece {
		var ps []piece
		off := 0
		for _, p := range pieces(b, sizes...) {
			ps = append(ps, piece{off, p})
			off += len(p)
		}
		return ps
	}
	three := in(hello, 600, 600)
	tests := []struct {
		name   string
		limit  int
		pieces []piece
		want   string
		doneAt int // the piece after which it is done; -1: never
	}{
		{"one piece", 8192, in(hello), "split.example", 0},
		{"three pieces in order", 8192, three, "split.example", 2},
		{"three pieces, the last first", 8192, []piece{three[2], three[0], three[1]}, "split.example", 2},
		{"repeats", 8192, []piece{three[0], three[0], three[1], three[1], three[2]}, "split.example", 4},
		{"overlapping pieces", 8192, []piece{{0, hello[:900]}, {500, hello[500:1700]}, {1600, hello[1600:]}}, "split.example", 1},
		{"a missing piece", 8192, []piece{three[0], three[2]}, "", -1},
		{"limit before the name", 1000, three, "", 1},
		{"not TLS", 8192, in([]byte("GET / HTTP/1.1\r\n\r\n")), "", 0},
		{"pieces past the limit", 100, []piece{{100, hello[100:200]}, {5000, hello[:10]}}, "", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStream(tt.limit)
			for i, p := range tt.pieces {
				name, done := s.Add(p.off, p.b)
				if tt.doneAt >= 0 && i >= tt.doneAt {
					require.True(t, done, "piece %d", i)
					assert.Equal(t, tt.want, name)
				} else {
					require.False(t, done, "piece %d", i)
				}
			}
		})
	}
}

// Whatever the order of the pieces, the stream finds what ServerName finds
// in the whole.
func TestStreamAnyOrder(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		h := testhello.Hello{ServerName: "order.example", KeyShareLen: rnd.IntN(2000), Shuffle: uint64(i + 1), RecordLen: rnd.IntN(3) * 500}
		hello := h.Bytes()
		var ps [][2]int
		for off := 0; off < len(hello); {
			n := 1 + rnd.IntN(700)
			ps = append(ps, [2]int{off, min(off+n, len(hello))})
			off += n
		}
		rnd.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		s := NewStream(8192)
		var name string
		var done bool
		for _, p := range ps {
			name, done = s.Add(p[0], hello[p[0]:p[1]])
		}
		require.True(t, done)
		require.Equal(t, "order.example", name)
	}
}
