//go:build linux

// Package testnet gives privileged tests what they attach to and where their
// traffic runs: a child cgroup to monitor, network namespaces joined by a
// veth pair, and sockets with the details tests assert on.
package testnet

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
)

// Cgroup is a child cgroup made for one test and removed after it.
type Cgroup struct {
	Path string
	root string
}

var cgroupSeq atomic.Int64

// migrate serializes moves of this process between cgroups.
var migrate sync.Mutex

// NewCgroup creates an empty child cgroup of the cgroup v2 root.
func NewCgroup(t testing.TB) *Cgroup {
	t.Helper()
	root, err := cgroupv2.Root()
	require.NoError(t, err)
	path := filepath.Join(root, fmt.Sprintf("netflowtcpend-test-%d-%d", os.Getpid(), cgroupSeq.Add(1)))
	require.NoError(t, os.Mkdir(path, 0o755))
	t.Cleanup(func() {
		// Sockets keep a reference to their cgroup, which may hold off the
		// removal for a moment after they close; a leftover empty cgroup is
		// harmless, so this only reports.
		if err := os.Remove(path); err != nil {
			t.Logf("remove test cgroup: %v", err)
		}
	})
	return &Cgroup{Path: path, root: root}
}

// Child creates a child cgroup of c, removed after the test (unless the
// test removed it).
func (c *Cgroup) Child(t testing.TB, name string) *Cgroup {
	t.Helper()
	path := filepath.Join(c.Path, name)
	require.NoError(t, os.Mkdir(path, 0o755))
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Logf("remove test cgroup: %v", err)
		}
	})
	return &Cgroup{Path: path, root: c.root}
}

// Remove removes the cgroup now, as a container runtime does when its
// container exits. It must hold no process (sockets do not count).
func (c *Cgroup) Remove() error { return os.Remove(c.Path) }

// Run runs f with this process in the cgroup. A socket belongs to the cgroup
// of the process that created it, for its whole life, so sockets that f
// creates are monitored and sockets created before or after are not.
// Accepted sockets belong to their listener's cgroup.
func (c *Cgroup) Run(t testing.TB, f func()) {
	t.Helper()
	migrate.Lock()
	defer migrate.Unlock()
	home, err := OwnCgroup(c.root)
	require.NoError(t, err)
	require.NoError(t, MoveSelf(c.Path))
	defer func() { require.NoError(t, MoveSelf(home)) }()
	f()
}

// Dial connects to addr from a socket made in the cgroup.
func (c *Cgroup) Dial(t testing.TB, addr netip.AddrPort) *net.TCPConn {
	t.Helper()
	var conn *net.TCPConn
	c.Run(t, func() {
		var err error
		conn, err = Dial(addr)
		require.NoError(t, err)
	})
	return conn
}

// Pair is the package's Pair with both sockets in the cgroup (the accepted
// one is in its listener's).
func (c *Cgroup) Pair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	c.Run(t, func() { client, server = Pair(t) })
	return client, server
}
