package dnscache

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzObserve feeds arbitrary bytes to the parse path, first as a query and
// then, when they parse, as the answer to a query made for them, so that
// hostile answers reach the cache too. make test runs it for a short while.
func FuzzObserve(f *testing.F) {
	f.Add(build(f, 1, true, "www.example.com", dnsmessage.TypeA,
		rr{owner: "www.example.com", cname: "edge.cdn.net", ttl: 60},
		rr{owner: "edge.cdn.net", addr: "93.184.216.34", ttl: 60}))
	f.Add(build(f, 2, true, "v6.test", dnsmessage.TypeAAAA, rr{owner: "v6.test", addr: "2001:db8::1", ttl: 0}))
	f.Add(build(f, 3, false, "q.test", dnsmessage.TypeA))
	f.Add([]byte{0, 1, 0x81, 0x80, 0, 1, 0xff, 0xff, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		c := New(Config{MaxAddresses: 8, MaxNames: 3, QueryTimeout: time.Second})
		c.Observe(Message{TimeNs: 1, Cookie: 1, Source: client, Dest: server, Sent: true, Payload: b})
		c.Observe(Message{TimeNs: 1, Cookie: 1, Source: client, Dest: server, Sent: true, TCP: true, Payload: b})
		m, err := parse(b)
		if err != nil {
			return
		}
		q := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: m.ID})
		_ = q.StartQuestions()
		n, err := dnsmessage.NewName(m.Question.Name + ".")
		if err != nil {
			return
		}
		_ = q.Question(dnsmessage.Question{Name: n, Type: m.Question.Type, Class: m.Question.Class})
		query, err := q.Finish()
		if err != nil {
			return
		}
		c.Observe(Message{TimeNs: 2, Cookie: 2, Source: client, Dest: server, Sent: true, Payload: query})
		c.Observe(Message{TimeNs: 3, Cookie: 2, Source: server, Dest: client, Payload: b})
		for _, a := range m.Addrs {
			names := c.Names(0, a.Addr, 0, 4)
			if len(names) > 3 {
				t.Fatalf("%d names, cap 3", len(names))
			}
			for _, name := range names {
				if name != strings.ToLower(name) || strings.ContainsAny(name, " \\") {
					t.Fatalf("name %q is not canonical", name)
				}
			}
		}
	})
}
