//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/churn"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

// The workloads run over loopback in the bench cgroup, where the collector
// watches, with plain TCP (testnet's; Go would listen with MPTCP).

// runChurn makes short-lived connections for d from clients goroutines (see
// churn.Run); onSocket, if not nil, gets every socket's cookie. Now and
// then a connect times out at these rates (the client's port was last used
// by a connection the server still holds in TIME_WAIT, and the SYN is
// retried): such failures are counted (failedConns) and said, and only more
// than one in a thousand fails the measurement.
func runChurn(d time.Duration, clients int, onSocket func(uint64)) (churn.Result, error) {
	return runChurnWith(d, churn.Options{Clients: clients, OnSocket: onSocket})
}

// runChurnWith is runChurn with more options.
func runChurnWith(d time.Duration, o churn.Options) (churn.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	res, err := churn.Run(ctx, o)
	if err == nil && res.Errors > 0 {
		failedConns.Add(res.Errors)
		fmt.Fprintf(os.Stderr, "bench: %d of %d connections failed, the first: %s\n", res.Errors, res.Errors+res.Conns, res.FirstError)
		if res.Errors*1000 > res.Errors+res.Conns {
			err = fmt.Errorf("%d of %d connections failed, the first: %s", res.Errors, res.Errors+res.Conns, res.FirstError)
		}
	}
	return res, err
}

// failedConns counts the connections that failed in all churns.
var failedConns atomic.Int64

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

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

// rpc makes 64-byte calls on conns long-lived connections for d (see
// loadtest.RPC).
func rpc(d time.Duration, conns int) (loadtest.RPCResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return loadtest.RPC(ctx, loadtest.RPCOptions{Conns: conns, Size: 64})
}
