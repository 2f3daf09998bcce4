//go:build linux

// Package churn makes short-lived TCP connections (optionally each after a
// DNS lookup) for the tests, the bench and the soak: the workload that most
// loads the receiver.
package churn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// Options describe short-lived connections. The connections use plain
// TCP (Go would listen with MPTCP, whose subflows have other cookies).
type Options struct {
	// Clients connect in parallel (at least 1).
	Clients int
	// Rate is the connections per second over all clients; 0: as fast as
	// they go.
	Rate float64
	// Listen is the server's address; the zero value is 127.0.0.1:0. With
	// DNS, listen on a wildcard address so that every answer reaches it.
	Listen netip.AddrPort
	// DNS, when set, makes each client resolve a name before each
	// connection and connect to the address in the answer.
	DNS *DNSOptions
	// Request is what each client sends first (the server reads it whole
	// and answers 64 bytes); nil: 64 zero bytes. A TLS ClientHello here
	// makes each connection start like TLS.
	Request []byte
	// OnSocket, when set, gets the cookie of every socket whose connection
	// ended or will end (client and server, failed connects included), at
	// the latest when its exchange is over. It is called from several
	// goroutines at once.
	OnSocket func(cookie uint64) `json:"-"`
}

// DNSOptions are the lookups of a run.
type DNSOptions struct {
	Server netip.AddrPort // the resolver, over UDP
	Names  []string       // asked in turn (type A); each answers one address
}

// Result is one run of short-lived connections.
type Result struct {
	Conns   int64 // connections completed
	Lookups int64 // DNS lookups answered
	// Errors counts failed lookups and connections (a connect that timed
	// out on a busy machine, say). Their sockets were reported all the
	// same: a failed connect is a connection end too. FirstError is the
	// first one's message.
	Errors     int64
	FirstError string
	Seconds    float64
	Port       uint16 // the server's port
}

// Rate returns the connections per second.
func (r Result) Rate() float64 { return float64(r.Conns) / r.Seconds }

// Run makes short-lived connections until ctx ends: each client connects,
// sends its request (64 bytes by default), reads a 64-byte response and the server's FIN,
// then closes. The server closes first, so TIME_WAIT stays on its side and
// the clients do not run out of ports. A failed connection is counted and
// the client goes on; only a server that cannot listen is an error.
func Run(ctx context.Context, o Options) (Result, error) {
	listen := o.Listen
	if !listen.IsValid() {
		listen = netip.MustParseAddrPort("127.0.0.1:0")
	}
	ln, err := testnet.Listen(listen)
	if err != nil {
		return Result{}, err
	}
	defer ln.Close()
	req := o.Request
	if req == nil {
		req = make([]byte, 64)
	}
	go serve(ln, len(req), o.OnSocket)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	addr := testnet.AddrPort(ln.Addr())
	if addr.Addr().IsUnspecified() {
		addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	}
	clients := max(o.Clients, 1)
	var conns, lookups, errs atomic.Int64
	var firstErr string
	var once sync.Once
	fail := func(err error) {
		errs.Add(1)
		once.Do(func() { firstErr = err.Error() })
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pace *time.Ticker
			if o.Rate > 0 {
				pace = time.NewTicker(time.Duration(float64(clients) * float64(time.Second) / o.Rate))
				defer pace.Stop()
			}
			dialer, cookie := newDialer(o.OnSocket != nil)
			resp := make([]byte, 64)
			for n := i; ctx.Err() == nil; n += clients {
				if pace != nil {
					select {
					case <-ctx.Done():
						return
					case <-pace.C:
					}
				}
				to := addr
				if o.DNS != nil {
					a, err := Lookup(o.DNS.Server, o.DNS.Names[n%len(o.DNS.Names)], uint16(n))
					if err != nil {
						fail(err)
						continue
					}
					lookups.Add(1)
					to = netip.AddrPortFrom(a, port)
				}
				*cookie = 0
				connected, err := exchange(dialer, to, req, resp)
				if o.OnSocket != nil && *cookie != 0 && (connected || synSent(err)) {
					o.OnSocket(*cookie)
				}
				if err != nil {
					fail(err)
					continue
				}
				conns.Add(1)
			}
		}()
	}
	wg.Wait()
	return Result{
		Conns: conns.Load(), Lookups: lookups.Load(), Errors: errs.Load(), FirstError: firstErr,
		Seconds: time.Since(start).Seconds(), Port: port,
	}, nil
}

// newDialer returns a dialer of plain TCP (as testnet's) and, if cookies,
// where it writes the cookie of each socket it makes, before the connect.
func newDialer(cookies bool) (*net.Dialer, *uint64) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	d.SetMultipathTCP(false)
	cookie := new(uint64)
	if cookies {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				*cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return d, cookie
}

// synSent tells whether a failed connect sent its SYN (it timed out, or was
// refused): then the kernel programs saw the socket, and its end is a
// record. A connect that failed before (no local port left, say) is none.
func synSent(err error) bool {
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout() || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.ECONNRESET)
}

// exchange makes one connection; connected tells whether the connect
// succeeded.
func exchange(d *net.Dialer, addr netip.AddrPort, req, resp []byte) (connected bool, err error) {
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		return false, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		return true, err
	}
	if _, err := io.ReadFull(c, resp); err != nil {
		return true, err
	}
	_, err = c.Read(resp[:1]) // the server's FIN
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return true, err
}

// response is every server's answer: 64 bytes, never written to.
var response [64]byte

func serve(ln net.Listener, reqLen int, onSocket func(uint64)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if onSocket != nil {
				cookie, err := testnet.Cookie(c.(*net.TCPConn))
				if err != nil {
					return // the client fails on the missing response
				}
				onSocket(cookie)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, reqLen)
			if _, err := io.ReadFull(c, buf); err == nil {
				_, _ = c.Write(response[:])
			}
		}()
	}
}

// Lookup asks server for name's A record over UDP, as a stub resolver does
// (a socket of its own per query), and returns the first address.
func Lookup(server netip.AddrPort, name string, id uint16) (netip.Addr, error) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	n, err := dnsmessage.NewName(name + ".")
	if err != nil {
		return netip.Addr{}, err
	}
	_ = b.Question(dnsmessage.Question{Name: n, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	query, err := b.Finish()
	if err != nil {
		return netip.Addr{}, err
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	buf := make([]byte, 1232)
	// UDP: a lost datagram is asked again, as resolvers do.
	for attempt := 0; ; attempt++ {
		if _, err := conn.Write(query); err != nil {
			return netip.Addr{}, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, err := conn.Read(buf)
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() && attempt < 2 {
			continue
		}
		if err != nil {
			return netip.Addr{}, fmt.Errorf("look up %s at %s: %w", name, server, err)
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:k])
		if err != nil {
			return netip.Addr{}, err
		}
		if h.ID != id || h.RCode != dnsmessage.RCodeSuccess {
			return netip.Addr{}, fmt.Errorf("look up %s: id %d, rcode %v", name, h.ID, h.RCode)
		}
		_ = p.SkipAllQuestions()
		for {
			rh, err := p.AnswerHeader()
			if err != nil {
				return netip.Addr{}, fmt.Errorf("look up %s: no A record", name)
			}
			if rh.Type != dnsmessage.TypeA {
				_ = p.SkipAnswer()
				continue
			}
			a, err := p.AResource()
			if err != nil {
				return netip.Addr{}, err
			}
			return netip.AddrFrom4(a.A), nil
		}
	}
}
