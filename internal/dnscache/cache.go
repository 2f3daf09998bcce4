// Package dnscache learns which names lead to which addresses from the DNS
// messages that monitored sockets send and receive, and answers, for a
// connection's address, the names that were valid for it.
//
// Trust: an answer is used only if it matches a query that a monitored
// socket sent and that is still outstanding: the same socket, transaction
// id and question, from the server the query went to. Anything else is
// counted and dropped, so a forged packet from port 53 changes nothing.
//
// Time: every time is the kernel's CLOCK_MONOTONIC in nanoseconds, as the
// records carry it, so the cache never reads a clock of its own (tests pass
// the times they want) and wall-clock steps do not move expiry.
//
// Scope: entries are keyed by network namespace as well as address, because
// container addresses overlap; where the kernel cannot tell the namespace
// (0), the entries of all such sockets share one scope.
package dnscache

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Config sizes the cache.
type Config struct {
	// MaxAddresses bounds the number of addresses held; the least recently
	// answered or looked up address is evicted first.
	MaxAddresses int
	// MaxNames caps the names returned for one address.
	MaxNames int
	// MinTTL is the shortest validity given to an answer: applications
	// connect some time after the answer arrives, and TTL 0 is common.
	MinTTL time.Duration
	// QueryTimeout is how long a query waits for its answer.
	QueryTimeout time.Duration
}

// maxChainsPerAddress bounds the chains kept for one address; the least
// recently answered is dropped first.
const maxChainsPerAddress = 16

// maxPendingQueries bounds outstanding queries; the oldest is dropped first.
const maxPendingQueries = 4096

// Stats count what the cache did.
type Stats struct {
	Queries, Answers uint64 // messages taken
	Unmatched        uint64 // answers that matched no outstanding query
	ParseErrors      uint64 // malformed or hostile messages
	Incomplete       uint64 // messages not whole in one record (truncated copy, split TCP)
	Hits, Misses     uint64 // address lookups with and without names
	Evictions        uint64 // addresses evicted for size
}

// Cache is safe for concurrent use.
type Cache struct {
	cfg Config

	mu      sync.Mutex
	addrs   *simplelru.LRU[addrKey, *entry]
	aliases *simplelru.LRU[nameKey, alias]
	pending *simplelru.LRU[queryKey, pendingQuery]
	stats   Stats
}

type addrKey struct {
	netns uint32
	addr  netip.Addr
}

type nameKey struct {
	netns uint32
	name  string
}

type queryKey struct {
	cookie uint64 // the socket: its answer arrives on it
	id     uint16
	q      question
}

type pendingQuery struct {
	server netip.AddrPort
	sentNs uint64
}

// entry holds the chains that led to one address, most recently answered
// first.
type entry struct {
	chains []*chain
}

// chain is the path from the name an application asked for through its
// CNAMEs to the name that carried the address, and when it was valid.
type chain struct {
	names      []string
	fromNs     uint64
	untilNs    uint64
	answeredNs uint64
}

// alias remembers a CNAME chain that an answer left unresolved (no address),
// so that the answer to a follow-up query for its last name can complete it.
type alias struct {
	names   []string
	untilNs uint64
}

// New returns an empty cache.
func New(cfg Config) *Cache {
	c := &Cache{cfg: cfg}
	// Sizes are positive (validated config), so the constructors cannot
	// fail. The LRUs are not safe for concurrent use; c.mu guards them.
	c.addrs, _ = simplelru.NewLRU(max(cfg.MaxAddresses, 1), func(addrKey, *entry) { c.stats.Evictions++ })
	c.aliases, _ = simplelru.NewLRU[nameKey, alias](max(cfg.MaxAddresses/4, 16), nil)
	c.pending, _ = simplelru.NewLRU[queryKey, pendingQuery](maxPendingQueries, nil)
	return c
}

// Message is what a monitored socket sent to port 53 or received from it.
type Message struct {
	TimeNs uint64
	Cookie uint64
	Netns  uint32
	Source netip.AddrPort
	Dest   netip.AddrPort
	Sent   bool // sent by the socket, else received
	// TCP: Payload is a segment's payload, DNS messages behind 2-byte
	// length prefixes; else it is one DNS message.
	TCP     bool
	Payload []byte
	// Truncated: the kernel copied only part of the payload.
	Truncated bool
}

// Observe takes what a socket sent or received: a query is remembered until
// its answer; an answer that matches one updates the names.
func (c *Cache) Observe(msg Message) {
	if !msg.TCP {
		if msg.Truncated {
			c.count(&c.stats.Incomplete)
			return
		}
		c.observe(msg, msg.Payload)
		return
	}
	// DNS over TCP: whole messages only. A segment that does not start
	// with one (a message split over segments) is dropped.
	b := msg.Payload
	for len(b) > 0 {
		if len(b) < 2 || int(b[0])<<8|int(b[1]) > len(b)-2 {
			c.count(&c.stats.Incomplete)
			return
		}
		n := int(b[0])<<8 | int(b[1])
		c.observe(msg, b[2:2+n])
		b = b[2+n:]
	}
}

func (c *Cache) count(n *uint64) {
	c.mu.Lock()
	*n++
	c.mu.Unlock()
}

func (c *Cache) observe(msg Message, dns []byte) {
	m, err := parse(dns)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.stats.ParseErrors++
		return
	}
	if msg.Sent {
		if m.Response {
			return // this socket answers queries: a server, not a client
		}
		c.stats.Queries++
		c.pending.Add(queryKey{msg.Cookie, m.ID, m.Question}, pendingQuery{msg.Dest, msg.TimeNs})
		return
	}
	if !m.Response {
		return
	}
	c.stats.Answers++
	key := queryKey{msg.Cookie, m.ID, m.Question}
	q, ok := c.pending.Peek(key)
	if !ok || q.server != msg.Source || msg.TimeNs-q.sentNs > uint64(c.cfg.QueryTimeout) {
		c.stats.Unmatched++
		return
	}
	c.pending.Remove(key) // one answer per query: a second one is unmatched
	if m.RCode == 0 {
		c.learn(msg.Netns, m, msg.TimeNs)
	}
}

// learn records the chains of a matched answer.
func (c *Cache) learn(netns uint32, m message, now uint64) {
	targets := make(map[string]cname, len(m.CNAMEs))
	for _, r := range m.CNAMEs {
		targets[r.Owner] = r
	}

	// Follow the CNAMEs from the question; ttls[i] is the shortest TTL
	// on the way to names[i].
	names := []string{m.Question.Name}
	ttls := []uint32{^uint32(0)}
	if a, ok := c.aliases.Get(nameKey{netns, m.Question.Name}); ok && now <= a.untilNs {
		names = slices.Clone(a.names)
		for range len(names) - 1 {
			ttls = append(ttls, ^uint32(0))
		}
	}
	for range maxChainHops {
		r, ok := targets[names[len(names)-1]]
		if !ok || slices.Contains(names, r.Target) {
			break
		}
		names = append(names, r.Target)
		ttls = append(ttls, min(ttls[len(ttls)-1], r.TTL))
	}

	resolved := false
	for _, a := range m.Addrs {
		i := slices.Index(names, a.Owner)
		if i < 0 {
			continue // an address for a name off the chain: not what was asked
		}
		resolved = true
		c.add(addrKey{netns, a.Addr.Unmap()}, names[:i+1], now, min(ttls[i], a.TTL))
	}
	if !resolved && len(names) > 1 {
		ttl := c.validity(ttls[len(ttls)-1])
		c.aliases.Add(nameKey{netns, names[len(names)-1]}, alias{names, now + ttl})
	}
}

func (c *Cache) validity(ttl uint32) uint64 {
	return uint64(max(time.Duration(ttl)*time.Second, c.cfg.MinTTL))
}

func (c *Cache) add(k addrKey, names []string, now uint64, ttl uint32) {
	until := now + c.validity(ttl)
	e, ok := c.addrs.Get(k)
	if !ok {
		e = &entry{}
		c.addrs.Add(k, e)
	}
	for i, ch := range e.chains {
		if !slices.Equal(ch.names, names) {
			continue
		}
		if now <= ch.untilNs {
			ch.untilNs = max(ch.untilNs, until) // still valid: extend
		} else {
			ch.fromNs, ch.untilNs = now, until // a new period of validity
		}
		ch.answeredNs = now
		copy(e.chains[1:i+1], e.chains[:i])
		e.chains[0] = ch
		return
	}
	ch := &chain{names: slices.Clone(names), fromNs: now, untilNs: until, answeredNs: now}
	e.chains = slices.Insert(e.chains, 0, ch)
	if len(e.chains) > maxChainsPerAddress {
		e.chains = e.chains[:maxChainsPerAddress]
	}
}

// Names returns the names of addr for a connection that started at startNs
// (0: not observed) and ended at endNs: the chains valid at either time,
// most recently answered first, without duplicates, at most MaxNames. A
// name whose TTL ran out while the connection was open is still returned,
// until its address is evicted for size.
func (c *Cache) Names(netns uint32, addr netip.Addr, startNs, endNs uint64) []string {
	return c.AppendNames(nil, netns, addr, startNs, endNs)
}

// AppendNames appends what Names returns to dst and returns the extended
// slice: a caller that is done with the names before its next lookup
// passes the same buffer (buf[:0]) every time and allocates nothing.
func (c *Cache) AppendNames(dst []string, netns uint32, addr netip.Addr, startNs, endNs uint64) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := len(dst)
	if e, ok := c.addrs.Get(addrKey{netns, addr.Unmap()}); ok {
		for _, ch := range e.chains {
			valid := ch.fromNs <= endNs && endNs <= ch.untilNs ||
				startNs != 0 && ch.fromNs <= startNs && startNs <= ch.untilNs
			if !valid {
				continue
			}
			for _, n := range ch.names {
				if len(dst)-first < c.cfg.MaxNames && !slices.Contains(dst[first:], n) {
					dst = append(dst, n)
				}
			}
		}
	}
	if len(dst) > first {
		c.stats.Hits++
	} else {
		c.stats.Misses++
	}
	return dst
}

// Stats returns the counters so far.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Len returns the number of addresses held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs.Len()
}
