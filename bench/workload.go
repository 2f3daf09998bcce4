//go:build linux

package main

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netflowtcpend/netflowtcpend/internal/testnet"
)

// The workloads run over loopback in the bench cgroup, where the collector
// watches, with plain TCP (testnet's; Go would listen with MPTCP).

// churnResult is one run of short-lived connections.
type churnResult struct {
	conns   int64 // connections completed
	seconds float64
	port    uint16 // the server's port, to pick this run's records out
}

func (r churnResult) rate() float64 { return float64(r.conns) / r.seconds }

// churn makes short-lived connections for d from clients goroutines: each
// connects, sends a 64-byte request, reads a 64-byte response and the
// server's FIN, then closes. The server closes first, so TIME_WAIT stays on
// its side and the clients do not run out of ports.
func churn(d time.Duration, clients int) (churnResult, error) {
	ln, err := testnet.Listen(loopback)
	if err != nil {
		return churnResult{}, err
	}
	defer ln.Close()
	go serve(ln)

	addr := testnet.AddrPort(ln.Addr())
	var conns atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := make([]byte, 64), make([]byte, 64)
			for time.Now().Before(deadline) {
				if err := exchange(addr, req, resp); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				conns.Add(1)
			}
		}()
	}
	wg.Wait()
	res := churnResult{conns: conns.Load(), seconds: time.Since(start).Seconds(),
		port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	return res, firstErr
}

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

func exchange(addr netip.AddrPort, req, resp []byte) error {
	c, err := testnet.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, resp); err != nil {
		return err
	}
	_, err = c.Read(resp[:1]) // the server's FIN
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			buf := make([]byte, 64)
			if _, err := io.ReadFull(c, buf); err == nil {
				_, _ = c.Write(buf)
			}
			c.Close()
		}()
	}
}

// bulk sends as much as it can over one connection for d and returns the
// throughput in bits per second.
func bulk(d time.Duration) (float64, error) {
	ln, err := testnet.Listen(loopback)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	received := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		received <- n
	}()
	c, err := testnet.Dial(testnet.AddrPort(ln.Addr()))
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for time.Since(start) < d {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, err
		}
	}
	c.Close()
	n := <-received
	return float64(n) * 8 / time.Since(start).Seconds(), nil
}
