//go:build linux

package loadtest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// RPCOptions describe request/response traffic on long-lived connections,
// as between clients and a cache or an RPC server: each connection carries
// one call at a time, a request and then its response, over and over.
// Plain TCP over loopback, as Churn.
type RPCOptions struct {
	// Conns are the connections, each with a client of its own (at least 1).
	Conns int
	// Size is the bytes of each request and of each response; 0: 64.
	Size int
}

// RPCResult is one run of calls.
type RPCResult struct {
	Calls   int64   // requests answered
	Seconds float64 // from the first call to the end of the last
}

// Rate returns the calls per second.
func (r RPCResult) Rate() float64 { return float64(r.Calls) / r.Seconds }

// RPC connects Conns clients to a server of its own, then makes calls until
// ctx ends, and closes the connections. Only the calls are timed: the
// connections are made before and closed after.
func RPC(ctx context.Context, o RPCOptions) (RPCResult, error) {
	size := o.Size
	if size <= 0 {
		size = 64
	}
	ln, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		return RPCResult{}, err
	}
	defer ln.Close()
	var servers sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			servers.Add(1)
			go func() {
				defer servers.Done()
				defer c.Close()
				buf := make([]byte, size)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()

	conns := make([]*net.TCPConn, max(o.Conns, 1))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		ln.Close()
		servers.Wait()
	}()
	for i := range conns {
		if conns[i], err = testnet.Dial(testnet.AddrPort(ln.Addr())); err != nil {
			return RPCResult{}, err
		}
	}

	var calls atomic.Int64
	var firstErr error
	var once sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := make([]byte, size), make([]byte, size)
			for ctx.Err() == nil {
				if _, err := c.Write(req); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	res := RPCResult{Calls: calls.Load(), Seconds: time.Since(start).Seconds()}
	if firstErr != nil && !errors.Is(firstErr, net.ErrClosed) {
		return res, firstErr
	}
	return res, nil
}
