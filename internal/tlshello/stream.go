package tlshello

import "errors"

// Stream collects the first bytes of one side of a connection from the
// pieces the kernel copies (one per TCP segment, each with its offset in
// the stream), in any order and with repeats (retransmissions), up to a
// limit, and parses them whenever the bytes from the start grow.
type Stream struct {
	buf   []byte
	spans []span // the byte ranges written, sorted, disjoint, not adjacent
	limit int
	done  bool
	name  string
}

type span struct{ start, end int }

// NewStream returns a Stream that keeps the first limit bytes.
func NewStream(limit int) *Stream {
	return &Stream{limit: limit}
}

// Add writes piece at offset (bytes past the limit are dropped) and says
// whether the server name is known now: done, with the name, or "" for a
// stream that has none (not TLS, no server_name extension, malformed, or
// the limit reached before the name). After done, Add returns the same.
func (s *Stream) Add(offset int, piece []byte) (name string, done bool) {
	if s.done {
		return s.name, true
	}
	if offset < 0 || offset >= s.limit || len(piece) == 0 {
		return "", false
	}
	end := min(offset+len(piece), s.limit)
	if len(s.buf) < end {
		s.buf = append(s.buf, make([]byte, end-len(s.buf))...)
	}
	before := s.prefix()
	copy(s.buf[offset:end], piece)
	s.insert(span{offset, end})
	n := s.prefix()
	if n == before {
		return "", false
	}
	name, err := ServerName(s.buf[:n])
	switch {
	case err == nil:
		s.finish(name)
	case !errors.Is(err, ErrTruncated) || n == s.limit:
		s.finish("")
	}
	return s.name, s.done
}

// Len is the bytes the stream holds (its memory, about).
func (s *Stream) Len() int { return cap(s.buf) }

func (s *Stream) finish(name string) {
	s.done, s.name = true, name
	s.buf, s.spans = nil, nil
}

// prefix is how many bytes from the start of the stream are there.
func (s *Stream) prefix() int {
	if len(s.spans) == 0 || s.spans[0].start != 0 {
		return 0
	}
	return s.spans[0].end
}

// insert adds sp to the spans, merging what overlaps or touches it.
func (s *Stream) insert(sp span) {
	out := s.spans[:0:0]
	placed := false
	for _, o := range s.spans {
		switch {
		case o.end < sp.start:
			out = append(out, o)
		case sp.end < o.start:
			if !placed {
				out = append(out, sp)
				placed = true
			}
			out = append(out, o)
		default: // overlaps or touches: merge into sp
			sp.start, sp.end = min(sp.start, o.start), max(sp.end, o.end)
		}
	}
	if !placed {
		out = append(out, sp)
	}
	s.spans = out
}

// Result is what Add last returned: the name, and whether it is known.
func (s *Stream) Result() (name string, done bool) { return s.name, s.done }
