//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// conntrackCount is the number of entries in the connection tracking table
// of the reader's network namespace.
const conntrackCount = "/proc/sys/net/netfilter/nf_conntrack_count"

// errConnTracking says why the bench does not measure where connections
// are tracked.
var errConnTracking = errors.New("connection tracking is on in the network namespace the bench measures in: " +
	"every connection would also pay for a lookup and an entry in its table (held 120 s after the connection ends), " +
	"so the CPU per connection would not be the receiver's and churn would fill the table; " +
	"remove the firewall rules that need it there (nat rules, ct or state matches: nft list ruleset)")

// checkNoConnTracking fails when connection tracking is on in this
// thread's network namespace: when a loopback connection gets an entry.
// It is on in a namespace where a firewall rule needs it (podman's
// netavark adds such rules in the host's, for one), and nowhere else.
func checkNoConnTracking() error {
	before, err := readConntrackCount()
	if errors.Is(err, os.ErrNotExist) {
		return nil // nf_conntrack is not loaded: no namespace tracks
	}
	if err != nil {
		return err
	}
	l, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		return err
	}
	defer l.Close()
	c, err := testnet.Dial(testnet.AddrPort(l.Addr()))
	if err != nil {
		return err
	}
	defer c.Close()
	after, err := readConntrackCount()
	if err != nil {
		return err
	}
	if before > 0 || after > before {
		return fmt.Errorf("%w (%d entries after one loopback connection)", errConnTracking, after)
	}
	return nil
}

func readConntrackCount() (int, error) {
	b, err := os.ReadFile(conntrackCount)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
