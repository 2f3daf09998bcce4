package dnscache

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"
)

const sec = uint64(time.Second)

var (
	client = netip.MustParseAddrPort("10.0.0.2:40000")
	server = netip.MustParseAddrPort("10.0.0.53:53")
)

// rr is an answer record for the messages built in these tests.
type rr struct {
	owner string
	cname string // a CNAME to this name, or
	addr  string // an A or AAAA record for this address
	ttl   uint32
}

func name(s string) dnsmessage.Name { return dnsmessage.MustNewName(s + ".") }

// build packs a DNS message with one question and the given answers.
func build(t testing.TB, id uint16, response bool, qname string, qtype dnsmessage.Type, answers ...rr) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: response, RecursionDesired: true})
	b.EnableCompression()
	require.NoError(t, b.StartQuestions())
	require.NoError(t, b.Question(dnsmessage.Question{Name: name(qname), Type: qtype, Class: dnsmessage.ClassINET}))
	require.NoError(t, b.StartAnswers())
	for _, a := range answers {
		h := dnsmessage.ResourceHeader{Name: name(a.owner), Class: dnsmessage.ClassINET, TTL: a.ttl}
		switch {
		case a.cname != "":
			require.NoError(t, b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: name(a.cname)}))
		case netip.MustParseAddr(a.addr).Is4():
			require.NoError(t, b.AResource(h, dnsmessage.AResource{A: netip.MustParseAddr(a.addr).As4()}))
		default:
			require.NoError(t, b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(a.addr).As16()}))
		}
	}
	msg, err := b.Finish()
	require.NoError(t, err)
	return msg
}

func testCache() *Cache {
	return New(Config{MaxAddresses: 100, MaxNames: 10, QueryTimeout: 10 * time.Second})
}

// exchange feeds the cache a query from cookie and its answer.
func exchange(t testing.TB, c *Cache, at uint64, cookie uint64, id uint16, qname string, qtype dnsmessage.Type, answers ...rr) {
	t.Helper()
	c.Observe(Message{TimeNs: at, Cookie: cookie, Source: client, Dest: server, Sent: true,
		Payload: build(t, id, false, qname, qtype)})
	c.Observe(Message{TimeNs: at + 1000, Cookie: cookie, Source: server, Dest: client,
		Payload: build(t, id, true, qname, qtype, answers...)})
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestCNAMEChain(t *testing.T) {
	c := testCache()
	exchange(t, c, sec, 1, 7, "WWW.Example.com", dnsmessage.TypeA,
		rr{owner: "www.example.com", cname: "example.com.cdn.net", ttl: 300},
		rr{owner: "example.com.cdn.net", addr: "93.184.216.34", ttl: 60},
		rr{owner: "unrelated.test", addr: "1.1.1.1", ttl: 60})
	assert.Equal(t, []string{"www.example.com", "example.com.cdn.net"}, c.Names(0, addr("93.184.216.34"), 0, 2*sec),
		"queried name first, lower case, through the CNAME to the name that carried the address")
	assert.Empty(t, c.Names(0, addr("1.1.1.1"), 0, 2*sec), "an address for a name off the chain was not asked for")
}

func TestCNAMEChainAcrossTwoAnswers(t *testing.T) {
	c := testCache()
	exchange(t, c, sec, 1, 7, "www.example.com", dnsmessage.TypeA,
		rr{owner: "www.example.com", cname: "edge.cdn.net", ttl: 300})
	exchange(t, c, 2*sec, 1, 8, "edge.cdn.net", dnsmessage.TypeA,
		rr{owner: "edge.cdn.net", addr: "10.1.1.1", ttl: 60})
	assert.Equal(t, []string{"www.example.com", "edge.cdn.net"}, c.Names(0, addr("10.1.1.1"), 0, 3*sec))
}

func TestCNAMELoopEnds(t *testing.T) {
	c := testCache()
	exchange(t, c, sec, 1, 7, "a.test", dnsmessage.TypeA,
		rr{owner: "a.test", cname: "b.test", ttl: 60},
		rr{owner: "b.test", cname: "a.test", ttl: 60},
		rr{owner: "b.test", addr: "10.2.2.2", ttl: 60})
	assert.Equal(t, []string{"a.test", "b.test"}, c.Names(0, addr("10.2.2.2"), 0, 2*sec))
}

func TestOneAddressBehindTwoNames(t *testing.T) {
	c := testCache()
	exchange(t, c, 1*sec, 1, 1, "a.test", dnsmessage.TypeA, rr{owner: "a.test", addr: "10.0.0.9", ttl: 60})
	exchange(t, c, 2*sec, 1, 2, "b.test", dnsmessage.TypeA, rr{owner: "b.test", addr: "10.0.0.9", ttl: 60})
	assert.Equal(t, []string{"b.test", "a.test"}, c.Names(0, addr("10.0.0.9"), 0, 3*sec), "most recently answered first")

	exchange(t, c, 4*sec, 1, 3, "a.test", dnsmessage.TypeA, rr{owner: "a.test", addr: "10.0.0.9", ttl: 60})
	assert.Equal(t, []string{"a.test", "b.test"}, c.Names(0, addr("10.0.0.9"), 0, 5*sec))
}

func TestIPv6AndMappedAddresses(t *testing.T) {
	c := testCache()
	exchange(t, c, sec, 1, 1, "v6.test", dnsmessage.TypeAAAA, rr{owner: "v6.test", addr: "2001:db8::7", ttl: 60})
	exchange(t, c, sec, 1, 2, "v4.test", dnsmessage.TypeAAAA, rr{owner: "v4.test", addr: "::ffff:10.0.0.7", ttl: 60})
	assert.Equal(t, []string{"v6.test"}, c.Names(0, addr("2001:db8::7"), 0, 2*sec))
	assert.Equal(t, []string{"v4.test"}, c.Names(0, addr("10.0.0.7"), 0, 2*sec), "records carry IPv4 as on the wire")
}

func TestTTLExpiryAndConnectionStart(t *testing.T) {
	c := testCache()
	exchange(t, c, 100*sec, 1, 1, "short.test", dnsmessage.TypeA, rr{owner: "short.test", addr: "10.3.3.3", ttl: 60})
	tests := []struct {
		name       string
		start, end uint64
		want       []string
	}{
		{"valid at the end", 0, 150 * sec, []string{"short.test"}},
		{"expired, start not observed", 0, 170 * sec, nil},
		{"expired, but the connection started while valid", 120 * sec, 900 * sec, []string{"short.test"}},
		{"started after expiry", 165 * sec, 170 * sec, nil},
		{"started before the answer, ended after expiry", 50 * sec, 170 * sec, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, c.Names(0, addr("10.3.3.3"), tt.start, tt.end))
		})
	}
}

func TestMinTTL(t *testing.T) {
	c := New(Config{MaxAddresses: 10, MaxNames: 10, MinTTL: 5 * time.Second, QueryTimeout: time.Second})
	exchange(t, c, 10*sec, 1, 1, "zero.test", dnsmessage.TypeA, rr{owner: "zero.test", addr: "10.4.4.4", ttl: 0})
	assert.Equal(t, []string{"zero.test"}, c.Names(0, addr("10.4.4.4"), 12*sec, 13*sec), "TTL 0 lasts MinTTL")
	assert.Empty(t, c.Names(0, addr("10.4.4.4"), 16*sec, 17*sec))
}

func TestRefreshExtendsAndRestartsValidity(t *testing.T) {
	c := testCache()
	ans := rr{owner: "r.test", addr: "10.5.5.5", ttl: 10}
	exchange(t, c, 0*sec+1, 1, 1, "r.test", dnsmessage.TypeA, ans)
	exchange(t, c, 5*sec, 1, 2, "r.test", dnsmessage.TypeA, ans) // while valid: extends to 15s
	assert.Equal(t, []string{"r.test"}, c.Names(0, addr("10.5.5.5"), 2*sec, 100*sec), "one period from 0 to 15s")
	exchange(t, c, 50*sec, 1, 3, "r.test", dnsmessage.TypeA, ans) // after expiry: a new period
	assert.Equal(t, []string{"r.test"}, c.Names(0, addr("10.5.5.5"), 0, 55*sec))
	assert.Empty(t, c.Names(0, addr("10.5.5.5"), 0, 30*sec+sec*100))
}

func TestNamesAreCapped(t *testing.T) {
	c := New(Config{MaxAddresses: 10, MaxNames: 3, QueryTimeout: time.Second})
	for i := range 5 {
		n := fmt.Sprintf("n%d.test", i)
		exchange(t, c, uint64(i+1)*sec, 1, uint16(i), n, dnsmessage.TypeA, rr{owner: n, addr: "10.6.6.6", ttl: 60})
	}
	assert.Equal(t, []string{"n4.test", "n3.test", "n2.test"}, c.Names(0, addr("10.6.6.6"), 0, 10*sec))
}

// AppendNames extends what it is given: the cap and the duplicates count
// only the names it appends, and a reused buffer makes no allocation.
func TestAppendNamesToABuffer(t *testing.T) {
	c := New(Config{MaxAddresses: 10, MaxNames: 2, QueryTimeout: time.Second})
	exchange(t, c, 1*sec, 1, 1, "a.test", dnsmessage.TypeA, rr{owner: "a.test", addr: "10.7.7.7", ttl: 60})
	exchange(t, c, 2*sec, 1, 2, "b.test", dnsmessage.TypeA, rr{owner: "b.test", addr: "10.7.7.7", ttl: 60})
	exchange(t, c, 3*sec, 1, 3, "c.test", dnsmessage.TypeA, rr{owner: "c.test", addr: "10.7.7.7", ttl: 60})
	got := c.AppendNames([]string{"c.test"}, 0, addr("10.7.7.7"), 0, 4*sec)
	assert.Equal(t, []string{"c.test", "c.test", "b.test"}, got)
	assert.Empty(t, c.AppendNames(got[:0], 0, addr("10.9.9.9"), 0, 4*sec))

	buf := make([]string, 0, 2)
	allocs := testing.AllocsPerRun(10, func() {
		buf = c.AppendNames(buf[:0], 0, addr("10.7.7.7"), 0, 4*sec)
	})
	assert.Zero(t, allocs)
	assert.Equal(t, []string{"c.test", "b.test"}, buf)
}

func TestEvictionForSize(t *testing.T) {
	c := New(Config{MaxAddresses: 2, MaxNames: 10, QueryTimeout: time.Second})
	for i, a := range []string{"10.7.0.1", "10.7.0.2", "10.7.0.3"} {
		n := fmt.Sprintf("e%d.test", i)
		exchange(t, c, uint64(i+1)*sec, 1, uint16(i), n, dnsmessage.TypeA, rr{owner: n, addr: a, ttl: 3600})
	}
	assert.Equal(t, 2, c.Len())
	assert.Equal(t, uint64(1), c.Stats().Evictions)
	assert.Empty(t, c.Names(0, addr("10.7.0.1"), 0, 5*sec), "the least recently used address went first")
	assert.Equal(t, []string{"e2.test"}, c.Names(0, addr("10.7.0.3"), 0, 5*sec))
}

func TestNetworkNamespacesAreSeparate(t *testing.T) {
	c := testCache()
	q := build(t, 1, false, "ns.test", dnsmessage.TypeA)
	a := build(t, 1, true, "ns.test", dnsmessage.TypeA, rr{owner: "ns.test", addr: "10.8.8.8", ttl: 60})
	c.Observe(Message{TimeNs: sec, Cookie: 5, Netns: 111, Source: client, Dest: server, Sent: true, Payload: q})
	c.Observe(Message{TimeNs: sec, Cookie: 5, Netns: 111, Source: server, Dest: client, Payload: a})
	assert.Equal(t, []string{"ns.test"}, c.Names(111, addr("10.8.8.8"), 0, 2*sec))
	assert.Empty(t, c.Names(222, addr("10.8.8.8"), 0, 2*sec), "the same address in another namespace")
}

func TestOnlyAnswersToOutstandingQueriesCount(t *testing.T) {
	q := build(t, 42, false, "trust.test", dnsmessage.TypeA)
	good := build(t, 42, true, "trust.test", dnsmessage.TypeA, rr{owner: "trust.test", addr: "10.9.9.9", ttl: 60})
	query := Message{TimeNs: sec, Cookie: 1, Source: client, Dest: server, Sent: true, Payload: q}
	answer := Message{TimeNs: sec + 1000, Cookie: 1, Source: server, Dest: client, Payload: good}

	tests := []struct {
		name   string
		query  *Message
		answer Message
	}{
		{"no query", nil, answer},
		{"other transaction id", &query, with(answer, func(m *Message) {
			m.Payload = build(t, 43, true, "trust.test", dnsmessage.TypeA, rr{owner: "trust.test", addr: "10.9.9.9", ttl: 60})
		})},
		{"other question", &query, with(answer, func(m *Message) {
			m.Payload = build(t, 42, true, "evil.test", dnsmessage.TypeA, rr{owner: "evil.test", addr: "10.9.9.9", ttl: 60})
		})},
		{"other server", &query, with(answer, func(m *Message) { m.Source = netip.MustParseAddrPort("10.0.0.66:53") })},
		{"other socket", &query, with(answer, func(m *Message) { m.Cookie = 2 })},
		{"too late", &query, with(answer, func(m *Message) { m.TimeNs = 20 * sec })},
		{"a query received, not sent", nil, with(answer, func(m *Message) { m.Payload = q })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testCache()
			if tt.query != nil {
				c.Observe(*tt.query)
			}
			c.Observe(tt.answer)
			assert.Empty(t, c.Names(0, addr("10.9.9.9"), 0, 2*sec))
			if tt.name != "a query received, not sent" {
				assert.Equal(t, uint64(1), c.Stats().Unmatched)
			}
		})
	}

	t.Run("the matching answer, once", func(t *testing.T) {
		c := testCache()
		c.Observe(query)
		c.Observe(answer)
		c.Observe(with(answer, func(m *Message) {
			m.Payload = build(t, 42, true, "trust.test", dnsmessage.TypeA, rr{owner: "trust.test", addr: "10.10.10.10", ttl: 60})
		}))
		assert.Equal(t, []string{"trust.test"}, c.Names(0, addr("10.9.9.9"), 0, 2*sec))
		assert.Empty(t, c.Names(0, addr("10.10.10.10"), 0, 2*sec), "a second answer to one query is unmatched")
		assert.Equal(t, Stats{Queries: 1, Answers: 2, Unmatched: 1, Hits: 1, Misses: 1}, c.Stats())
	})
}

func with(m Message, f func(*Message)) Message {
	f(&m)
	return m
}

func TestFailedLookupsTeachNothing(t *testing.T) {
	c := testCache()
	q := build(t, 9, false, "nx.test", dnsmessage.TypeA)
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 9, Response: true, RCode: dnsmessage.RCodeNameError})
	require.NoError(t, b.StartQuestions())
	require.NoError(t, b.Question(dnsmessage.Question{Name: name("nx.test"), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	require.NoError(t, b.StartAnswers())
	require.NoError(t, b.AResource(dnsmessage.ResourceHeader{Name: name("nx.test"), Class: dnsmessage.ClassINET, TTL: 60},
		dnsmessage.AResource{A: [4]byte{10, 11, 11, 11}}))
	nx, err := b.Finish()
	require.NoError(t, err)
	c.Observe(Message{TimeNs: sec, Cookie: 1, Source: client, Dest: server, Sent: true, Payload: q})
	c.Observe(Message{TimeNs: sec, Cookie: 1, Source: server, Dest: client, Payload: nx})
	assert.Empty(t, c.Names(0, addr("10.11.11.11"), 0, 2*sec))
	assert.Zero(t, c.Stats().Unmatched)
}

func TestDNSOverTCP(t *testing.T) {
	frame := func(msgs ...[]byte) []byte {
		var out []byte
		for _, m := range msgs {
			out = append(out, byte(len(m)>>8), byte(len(m)))
			out = append(out, m...)
		}
		return out
	}
	qa := build(t, 1, false, "tcp-a.test", dnsmessage.TypeA)
	qb := build(t, 2, false, "tcp-b.test", dnsmessage.TypeA)
	aa := build(t, 1, true, "tcp-a.test", dnsmessage.TypeA, rr{owner: "tcp-a.test", addr: "10.12.0.1", ttl: 60})
	ab := build(t, 2, true, "tcp-b.test", dnsmessage.TypeA, rr{owner: "tcp-b.test", addr: "10.12.0.2", ttl: 60})

	c := testCache()
	c.Observe(Message{TimeNs: sec, Cookie: 1, Source: client, Dest: server, Sent: true, TCP: true, Payload: frame(qa, qb)})
	c.Observe(Message{TimeNs: sec, Cookie: 1, Source: server, Dest: client, TCP: true, Payload: frame(aa, ab)})
	assert.Equal(t, []string{"tcp-a.test"}, c.Names(0, addr("10.12.0.1"), 0, 2*sec), "two messages in one segment")
	assert.Equal(t, []string{"tcp-b.test"}, c.Names(0, addr("10.12.0.2"), 0, 2*sec))

	split := frame(aa)
	c.Observe(Message{TimeNs: sec, Cookie: 1, Source: server, Dest: client, TCP: true, Payload: split[:10]})
	c.Observe(Message{TimeNs: sec, Cookie: 1, Source: server, Dest: client, TCP: true, Payload: split[10:]})
	assert.Equal(t, uint64(2), c.Stats().Incomplete, "a message split over segments is dropped, both halves")
}

func TestMalformedMessagesAreCountedNotFatal(t *testing.T) {
	good := build(t, 1, true, "m.test", dnsmessage.TypeA, rr{owner: "m.test", addr: "10.13.0.1", ttl: 60})
	loop := append([]byte(nil), good[:12]...)
	loop[5] = 1                               // one question
	loop = append(loop, 0xc0, 12, 0, 1, 0, 1) // its name points at itself
	huge := append([]byte(nil), good...)
	huge[6], huge[7] = 0xff, 0xff // 65535 answers claimed
	odd := build(t, 1, true, "m.test", dnsmessage.TypeA, rr{owner: "m.test", cname: "bad\\032name.test", ttl: 60})

	for _, tt := range []struct {
		name string
		msg  []byte
	}{
		{"empty", nil},
		{"header only", good[:12]},
		{"truncated answer", good[:len(good)-3]},
		{"compression loop", loop},
		{"huge answer count", huge},
		{"odd name", odd},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := testCache()
			c.Observe(Message{TimeNs: sec, Cookie: 1, Source: client, Dest: server, Sent: true,
				Payload: build(t, 1, false, "m.test", dnsmessage.TypeA)})
			c.Observe(Message{TimeNs: sec, Cookie: 1, Source: server, Dest: client, Payload: tt.msg})
			assert.Equal(t, uint64(1), c.Stats().ParseErrors)
		})
	}
}

func TestTruncatedCopiesAreIncomplete(t *testing.T) {
	c := testCache()
	c.Observe(Message{TimeNs: sec, Cookie: 1, Source: server, Dest: client, Truncated: true, Payload: []byte{1, 2}})
	assert.Equal(t, uint64(1), c.Stats().Incomplete)
}

func TestConcurrentUse(t *testing.T) {
	c := New(Config{MaxAddresses: 64, MaxNames: 4, QueryTimeout: time.Minute})
	// The messages are built here: require may only stop this goroutine.
	type step struct {
		at            uint64
		query, answer []byte
		addr          netip.Addr
	}
	steps := make([][]step, 8)
	for g := range steps {
		for i := range 200 {
			a := fmt.Sprintf("10.20.%d.%d", g, i%100)
			n := fmt.Sprintf("c%d-%d.test", g, i)
			steps[g] = append(steps[g], step{at: uint64(i+1) * sec, addr: addr(a),
				query:  build(t, uint16(i), false, n, dnsmessage.TypeA),
				answer: build(t, uint16(i), true, n, dnsmessage.TypeA, rr{owner: n, addr: a, ttl: 60})})
		}
	}
	var wg sync.WaitGroup
	for g, steps := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, s := range steps {
				c.Observe(Message{TimeNs: s.at, Cookie: uint64(g), Source: client, Dest: server, Sent: true, Payload: s.query})
				c.Observe(Message{TimeNs: s.at + 1000, Cookie: uint64(g), Source: server, Dest: client, Payload: s.answer})
				assert.LessOrEqual(t, len(c.Names(0, s.addr, 0, s.at)), 4)
				_ = c.Stats()
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, c.Len(), 64)
	assert.Equal(t, uint64(1600), c.Stats().Queries)
}
