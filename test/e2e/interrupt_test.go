//go:build linux

package e2e

import (
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"testing"
)

// What a test leaves outside its own process (a container, its cgroup) is
// removed in t.Cleanup, which does not run when the test binary is
// interrupted (Ctrl-C, or SIGTERM from whoever runs it). Such cleanups are
// registered with onInterrupt instead: on SIGINT or SIGTERM, the handler
// that TestMain installs runs those of the tests still running, then ends
// the binary as the signal would have.

var pendingCleanups struct {
	sync.Mutex
	next int
	fns  map[int]func() error
}

// onInterrupt runs f after the test (t.Cleanup: an error fails the test),
// or when the test binary is interrupted while the test runs, whichever
// comes first. f must not use t: on an interrupt it runs outside the test.
func onInterrupt(t *testing.T, f func() error) {
	t.Helper()
	c := &pendingCleanups
	c.Lock()
	id := c.next
	c.next++
	if c.fns == nil {
		c.fns = map[int]func() error{}
	}
	c.fns[id] = f
	c.Unlock()
	t.Cleanup(func() {
		c.Lock()
		_, pending := c.fns[id]
		delete(c.fns, id)
		c.Unlock()
		if pending {
			if err := f(); err != nil {
				t.Error(err)
			}
		}
	})
}

// cleanUpOnInterrupt has SIGINT and SIGTERM run what onInterrupt
// registered, the last first, and end the binary.
func cleanUpOnInterrupt() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-signals
		c := &pendingCleanups
		c.Lock() // kept: no test's cleanup runs one of these meanwhile
		ids := slices.Sorted(maps.Keys(c.fns))
		for _, id := range slices.Backward(ids) {
			if err := c.fns[id](); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: interrupted: %v\n", err)
			}
		}
		fmt.Fprintf(os.Stderr, "e2e: %v: removed what %d cleanups of running tests were for\n", s, len(ids))
		os.Exit(128 + int(s.(syscall.Signal)))
	}()
}
