//go:build linux

package loadtest

import (
	"encoding/binary"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/otlpsink"
)

// Mode is how the sink answers export requests.
type Mode int32

const (
	// Accept takes the records and answers 200.
	Accept Mode = iota
	// Stall reads the request and never answers: the exporter's request
	// times out. When the mode changes, stalled requests are cut off
	// without an answer; their records are never counted.
	Stall
	// Unavailable answers 503, which exporters retry.
	Unavailable
	// BadRequest answers 400, a permanent error: exporters drop the data.
	BadRequest
)

func (m Mode) String() string {
	return [...]string{"accept", "stall", "unavailable (503)", "bad request (400)"}[m]
}

// Sink is an OTLP/HTTP logs endpoint (POST /v1/logs). In mode Accept it
// counts the records it receives by socket cookie.
//
// A request whose records (cookies and times, in order) are those of a
// request it took before is the exporter sending it again: its timeout
// ran out while the sink was still taking the request, which a slow
// machine does (at-least-once delivery, the exporter's). The sink counts
// those records as resent, not as records, so that a record twice means
// the receiver emitted it twice.
type Sink struct {
	ln   net.Listener
	srv  *http.Server
	mode atomic.Int32

	mu       sync.Mutex
	unstall  chan struct{}  // closed when the mode leaves Stall
	cookies  map[uint64]int // records by socket cookie
	records  int64
	named    int64               // records with a domain name on either side
	requests [4]int64            // by mode
	taken    map[uint64]struct{} // fingerprints of the requests taken
	resent   int64               // records in requests taken before
}

// NewSink listens on 127.0.0.1 and serves. The connections it accepts
// belong to the cgroup of the process at the time it listened.
func NewSink() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{ln: ln, cookies: map[uint64]int{}, taken: map[uint64]struct{}{}, unstall: make(chan struct{})}
	accept := otlpsink.Handler(s.consume)
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := s.Mode()
		s.mu.Lock()
		s.requests[m]++
		unstall := s.unstall
		s.mu.Unlock()
		switch m {
		case Stall:
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-unstall:
			}
			panic(http.ErrAbortHandler) // close the connection without an answer
		case Unavailable:
			http.Error(w, "stalled backend", http.StatusServiceUnavailable)
		case BadRequest:
			http.Error(w, "refused by the test", http.StatusBadRequest)
		default:
			accept.ServeHTTP(w, r)
		}
	})}
	go s.srv.Serve(ln) //nolint:errcheck // ends with Close
	return s, nil
}

// Addr is where the sink listens (host:port).
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Close stops serving.
func (s *Sink) Close() error {
	s.SetMode(Accept) // releases stalled requests
	return s.srv.Close()
}

// Mode returns the current mode.
func (s *Sink) Mode() Mode { return Mode(s.mode.Load()) }

// SetMode changes how the sink answers from now on.
func (s *Sink) SetMode(m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if Mode(s.mode.Swap(int32(m))) == Stall && m != Stall {
		close(s.unstall)
		s.unstall = make(chan struct{})
	}
}

// Requests returns how many export requests arrived in mode m.
func (s *Sink) Requests(m Mode) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[m]
}

func (s *Sink) consume(ld plog.Logs) {
	fp := fingerprint(ld)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.taken[fp]; ok {
		s.resent += int64(ld.LogRecordCount())
		return
	}
	s.taken[fp] = struct{}{}
	otlpsink.ForEach(ld, func(_ pcommon.Resource, lr plog.LogRecord) {
		a := lr.Attributes()
		cookie, _ := a.Get("netflow.socket.cookie")
		s.cookies[uint64(cookie.Int())]++
		s.records++
		for _, k := range []string{"netflow.source.domains", "netflow.destination.domains"} {
			if v, ok := a.Get(k); ok && v.Type() == pcommon.ValueTypeSlice && v.Slice().Len() > 0 {
				s.named++
				break
			}
		}
	})
}

// fingerprint hashes a request's records, their socket cookies and times in
// order: the same for a request sent again, different for any other.
func fingerprint(ld plog.Logs) uint64 {
	h := fnv.New64a()
	var b [16]byte
	otlpsink.ForEach(ld, func(_ pcommon.Resource, lr plog.LogRecord) {
		cookie, _ := lr.Attributes().Get("netflow.socket.cookie")
		binary.LittleEndian.PutUint64(b[:8], uint64(cookie.Int()))
		binary.LittleEndian.PutUint64(b[8:], uint64(lr.Timestamp()))
		h.Write(b[:])
	})
	return h.Sum64()
}

// Records returns how many records the sink took in all.
func (s *Sink) Records() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records
}

// Named returns how many records had a domain name on either side.
func (s *Sink) Named() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.named
}

// Delivered returns how many of cookies have a record.
func (s *Sink) Delivered(cookies []uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range cookies {
		if s.cookies[c] > 0 {
			n++
		}
	}
	return n
}

// Accounting compares the records the sink took with the sockets that were
// made, by socket cookie.
type Accounting struct {
	Sockets    int // sockets made
	Delivered  int // of those, with at least one record
	Missing    int // sockets without a record
	Duplicates int // records beyond the first of a socket
	Unexpected int // records of sockets not made (by someone else)
	Resent     int // records in requests the exporter sent again, not counted above
}

// Account compares the sink's records with the sockets made.
func (s *Sink) Account(made map[uint64]struct{}) Accounting {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := Accounting{Sockets: len(made), Resent: int(s.resent)}
	for c := range made {
		n := s.cookies[c]
		if n == 0 {
			a.Missing++
			continue
		}
		a.Delivered++
		a.Duplicates += n - 1
	}
	for c, n := range s.cookies {
		if _, ok := made[c]; !ok {
			a.Unexpected += n
		}
	}
	return a
}
