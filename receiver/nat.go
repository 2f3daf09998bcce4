//go:build linux

package receiver

import (
	"errors"
	"fmt"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/conntrack"
)

// natLookup names the translations that the kernel programs cannot see,
// from the connection tracking of the node's network namespace (the
// collector's): nat.conntrack. Used by the read loop only.
type natLookup struct {
	ct     *conntrack.Conn
	netns  uint32 // inode of the namespace ct asks
	logger *zap.Logger
	// The first failure other than a missing entry is logged; the rest
	// are counted and told at Shutdown (never a line per record).
	failures int
	lookups  int
}

// openConntrack opens the connection tracking of this process's network
// namespace and returns the namespace's inode. Tests replace it with one
// that opens a test namespace standing in for the node's.
func openConntrack() (*conntrack.Conn, uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return nil, 0, fmt.Errorf("read own network namespace: %w", err)
	}
	ct, err := conntrack.Open()
	if err != nil {
		return nil, 0, err
	}
	return ct, uint32(st.Ino), nil
}

func newNATLookup(open func() (*conntrack.Conn, uint32, error), logger *zap.Logger) (*natLookup, error) {
	ct, netns, err := open()
	if err != nil {
		return nil, fmt.Errorf("nat.conntrack: %w; grant CAP_NET_ADMIN or set nat.conntrack to false", err)
	}
	return &natLookup{ct: ct, netns: netns, logger: logger}, nil
}

// mayNeed says whether e's translation may be one that its own packets
// could not show. A socket in the node's namespace whose SYN or end left it
// showed everything this namespace translated; a socket in another
// namespace (a pod's) may be translated again on the node after it left.
func (n *natLookup) mayNeed(e *bpf.Event) bool {
	return e.Netns != n.netns || !e.Translation.Known
}

// fill asks the node's connection tracking for e's connection, by the
// tuple as it left e's own namespace, and sets e.Translation from the
// answer. No entry (nothing tracked it on the node) leaves e as it was.
func (n *natLookup) fill(e *bpf.Event) {
	if !n.mayNeed(e) {
		return
	}
	tuple := conntrack.Tuple{Src: e.Local(), Dst: e.Peer()}
	if e.Translation.Known {
		// Translated in its own namespace first: the node tracks the
		// connection as it came out of it.
		tuple = conntrack.Tuple{Src: e.Translation.Local, Dst: e.Translation.Peer}
	}
	n.lookups++
	f, err := n.ct.Get(tuple)
	if err != nil {
		if !errors.Is(err, conntrack.ErrNotFound) {
			if n.failures == 0 {
				n.logger.Warn("Asking the connection tracking failed; records lack translations it knows",
					zap.Error(err))
			}
			n.failures++
		}
		return
	}
	if x, ok := f.Translated(tuple); ok {
		e.Translation = bpf.Translation{Known: true, Local: x.Src, Peer: x.Dst}
	}
}

func (n *natLookup) close() error {
	if n == nil {
		return nil
	}
	if n.failures > 0 {
		n.logger.Warn("Connection tracking lookups failed", zap.Int("failures", n.failures), zap.Int("lookups", n.lookups))
	}
	return n.ct.Close()
}
