//go:build linux

package receiver

import (
	"errors"
	"net/netip"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/tlshello"
)

// Bounds of tlsNames: connections whose ClientHello is being joined (a
// round trip or so each), connections open with a name known (until their
// end record), and ClientHellos seen in a SYN at a listener (TCP Fast Open)
// not yet claimed. Least recently used first out: a connection evicted
// gets no name.
const (
	maxTLSPending  = 4096
	maxTLSNames    = 1 << 18 // about 20 MiB at most, with names shared
	maxTLSFastOpen = 1024
)

// tlsNames joins the pieces of ClientHellos that the kernel copies into
// the server name (SNI) of each socket, which the socket's end record then
// takes. One goroutine (the read loop) uses it.
type tlsNames struct {
	pending  *simplelru.LRU[uint64, *tlshello.Stream] // by socket cookie
	names    *simplelru.LRU[uint64, tlsName]          // by socket cookie
	fastOpen *simplelru.LRU[connKey, *tlshello.Stream]
	// Names repeat: one string each.
	strings map[string]string
	evicted int // connections whose name was dropped for room
}

// tlsName is a socket's server name, and whether the socket sent it (it is
// the TLS client: the name is its peer's) or received it.
type tlsName struct {
	name string
	sent bool
}

// connKey names a connection by its namespace and its client and server,
// as the server's socket sees them.
type connKey struct {
	netns          uint32
	client, server netip.AddrPort
}

func newTLSNames() *tlsNames {
	t := &tlsNames{strings: map[string]string{}}
	evict := func(uint64, tlsName) { t.evicted++ }
	t.pending, _ = simplelru.NewLRU[uint64, *tlshello.Stream](maxTLSPending, func(uint64, *tlshello.Stream) { t.evicted++ })
	t.names, _ = simplelru.NewLRU[uint64, tlsName](maxTLSNames, evict)
	t.fastOpen, _ = simplelru.NewLRU[connKey, *tlshello.Stream](maxTLSFastOpen, nil)
	return t
}

// observe adds a piece of a socket's first bytes.
func (t *tlsNames) observe(p *bpf.TLSPiece) {
	if p.Listener {
		// The ClientHello, or its start, in a SYN (TCP Fast Open): the
		// accepted socket does not exist yet.
		key := connKey{p.Netns, p.Source, p.Destination}
		s, ok := t.fastOpen.Get(key)
		if !ok {
			s = tlshello.NewStream(p.Limit)
			t.fastOpen.Add(key, s)
		}
		s.Add(p.Offset, p.Payload)
		return
	}
	if t.names.Contains(p.Cookie) {
		return // a retransmission of what gave the name
	}
	s, ok := t.pending.Get(p.Cookie)
	if !ok && p.Offset == 0 {
		// The usual case, the whole ClientHello in one piece: parsed
		// where it lies, nothing kept but the name.
		name, err := tlshello.ServerName(p.Payload)
		if !errors.Is(err, tlshello.ErrTruncated) || len(p.Payload) >= p.Limit {
			t.names.Add(p.Cookie, tlsName{name: t.intern(name), sent: p.Egress})
			return
		}
	}
	if !ok {
		if !p.Egress && p.Offset > 0 {
			// The rest of a ClientHello whose start came in the SYN.
			key := connKey{p.Netns, p.Source, p.Destination}
			if s, ok = t.fastOpen.Peek(key); ok {
				t.fastOpen.Remove(key)
			}
		}
		if s == nil {
			s = tlshello.NewStream(p.Limit)
		}
		t.pending.Add(p.Cookie, s)
	}
	if name, done := s.Add(p.Offset, p.Payload); done {
		t.pending.Remove(p.Cookie)
		t.names.Add(p.Cookie, tlsName{name: t.intern(name), sent: p.Egress})
	}
}

// take returns the server name of the socket whose end e is, and forgets
// the socket.
func (t *tlsNames) take(e *bpf.Event) (tlsName, bool) {
	if t.names.Len() == 0 && t.pending.Len() == 0 && t.fastOpen.Len() == 0 {
		return tlsName{}, false // no TLS at all: the usual case costs this
	}
	if n, ok := t.names.Peek(e.Cookie); ok {
		t.names.Remove(e.Cookie)
		return n, n.name != ""
	}
	t.pending.Remove(e.Cookie) // never complete: no name
	if t.fastOpen.Len() == 0 {
		return tlsName{}, false
	}
	local, peer := e.Source, e.Destination
	if e.EndBy != bpf.EndByLocal {
		local, peer = peer, local
	}
	key := connKey{e.Netns, peer, local}
	s, ok := t.fastOpen.Peek(key)
	if !ok {
		return tlsName{}, false
	}
	t.fastOpen.Remove(key)
	name, _ := s.Result()
	return tlsName{name: t.intern(name)}, name != ""
}

// intern returns one string per name; the set starts over when large.
func (t *tlsNames) intern(name string) string {
	if s, ok := t.strings[name]; ok {
		return s
	}
	if len(t.strings) >= maxTLSPending {
		clear(t.strings)
	}
	t.strings[name] = name
	return name
}
