//go:build linux

package testnet

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Netns is a network namespace made for a test.
type Netns struct {
	handle int // a file descriptor of the namespace (/proc/thread-self/ns/net)
	// Addr4 and Addr6 are this side's addresses on the veth pair.
	Addr4, Addr6 netip.Addr
}

// Do runs f on an OS thread inside the namespace. Sockets that f creates
// live in the namespace for their whole life, whichever thread uses them
// later.
func (n *Netns) Do(f func() error) error {
	done := make(chan error)
	go func() {
		// The thread is never unlocked: it ends with the goroutine instead
		// of going back to the pool in a foreign namespace.
		runtime.LockOSThread()
		if err := unix.Setns(n.handle, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		done <- f()
	}()
	return <-done
}

// Inode returns the namespace's inode number, as records carry it.
func (n *Netns) Inode() uint32 {
	var st unix.Stat_t
	if err := unix.Fstat(n.handle, &st); err != nil {
		panic(err)
	}
	return uint32(st.Ino)
}

// hostInode is read at start, before any thread enters a test namespace:
// later, /proc/self/ns/net may show a namespace that the main thread was
// left in (a locked goroutine that ends on the main thread wedges it there).
var hostInode = func() uint32 {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		panic(err)
	}
	return uint32(st.Ino)
}()

// HostInode returns the inode number of this process's network namespace.
func HostInode() uint32 { return hostInode }

// NewVethPair creates two network namespaces joined by a veth pair:
// 10.77.0.1 and fd77::1 in the first, 10.77.0.2 and fd77::2 in the second.
func NewVethPair(t testing.TB) (*Netns, *Netns) {
	t.Helper()
	return newVethPair(t, 0)
}

// NewSmallSegmentVethPair is NewVethPair with this MTU (below 1280, no IPv6
// addresses: Addr6 is invalid), and TCP segments of
// at most that size from the first namespace's side: a GSO limit of one
// segment, set when the link is made (Linux 4.16), so that even the cgroup
// egress hook, which runs before the kernel would cut a larger one, sees
// each segment. veth's GRO is off by default, so the other side receives
// them as they are.
func NewSmallSegmentVethPair(t testing.TB, mtu int) (*Netns, *Netns) {
	t.Helper()
	return newVethPair(t, mtu)
}

// newVethPair makes the pair; mtu 0 leaves the links as the kernel makes
// them.
func newVethPair(t testing.TB, mtu int) (*Netns, *Netns) {
	t.Helper()
	a := newNetns(t, "10.77.0.1", "fd77::1")
	b := newNetns(t, "10.77.0.2", "fd77::2")
	if mtu > 0 && mtu < 1280 {
		a.Addr6, b.Addr6 = netip.Addr{}, netip.Addr{} // IPv6 needs 1280
	}
	require.NoError(t, a.Do(func() error { return addVeth("nft0", "nft1", b.handle, mtu) }))
	require.NoError(t, a.Do(func() error { return a.configure("nft0") }))
	require.NoError(t, b.Do(func() error { return b.configure("nft1") }))
	return a, b
}

// Unanswered returns an address on the veth subnet that nobody answers: a
// permanent neighbour entry sends its packets to a MAC address no interface
// has, so they are dropped without an ICMP error or a RST.
func (n *Netns) Unanswered(t testing.TB) netip.Addr {
	t.Helper()
	addr := netip.MustParseAddr("10.77.0.99")
	require.NoError(t, n.Do(func() error {
		link := "nft0"
		if _, err := net.InterfaceByName(link); err != nil {
			link = "nft1"
		}
		return neighAdd(link, addr, net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99})
	}))
	return addr
}

// configure brings up lo and the veth end and gives it the addresses.
func (n *Netns) configure(veth string) error {
	for _, name := range []string{"lo", veth} {
		if name == veth {
			for _, a := range []struct {
				ip   netip.Addr
				bits int
			}{{n.Addr4, 24}, {n.Addr6, 64}} {
				if !a.ip.IsValid() {
					continue
				}
				if err := AddrAdd(name, netip.PrefixFrom(a.ip, a.bits)); err != nil {
					return err
				}
			}
		}
		if err := linkUp(name); err != nil {
			return err
		}
	}
	return nil
}

// NewNetns creates a network namespace with lo up.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	n, err := OpenNetns()
	require.NoError(t, err)
	t.Cleanup(func() { n.Close() })
	return n
}

// OpenNetns creates a network namespace with lo up, for programs that have
// no testing.TB (make soak); Close frees it.
func OpenNetns() (*Netns, error) {
	h, err := unshareNetns()
	if err != nil {
		return nil, err
	}
	n := &Netns{handle: h, Addr4: netip.MustParseAddr("127.0.0.1"), Addr6: netip.IPv6Loopback()}
	err = n.Do(func() error { return linkUp("lo") })
	if err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Close frees the namespace (it lives on while processes are in it).
func (n *Netns) Close() error { return unix.Close(n.handle) }

// unshareNetns makes a network namespace and returns a file descriptor of
// it. The thread that makes it moves into it; locked, it ends with its
// goroutine instead of going back to the pool in a foreign namespace.
func unshareNetns() (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- result{-1, fmt.Errorf("unshare network namespace: %w", err)}
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			err = fmt.Errorf("open network namespace: %w", err)
		}
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

// AddLoopbackAddr adds an address (a /32 or /128) to lo in the namespace.
func (n *Netns) AddLoopbackAddr(t testing.TB, addr netip.Addr) {
	t.Helper()
	require.NoError(t, n.Do(func() error {
		return AddrAdd("lo", netip.PrefixFrom(addr, addr.BitLen()))
	}))
}

// Start starts cmd inside the namespace: the child inherits the namespace
// of the thread that forks it.
func (n *Netns) Start(cmd *exec.Cmd) error {
	return n.Do(cmd.Start)
}

func newNetns(t testing.TB, addr4, addr6 string) *Netns {
	t.Helper()
	h, err := unshareNetns()
	require.NoError(t, err)
	n := &Netns{handle: h, Addr4: netip.MustParseAddr(addr4), Addr6: netip.MustParseAddr(addr6)}
	t.Cleanup(func() { n.Close() })
	return n
}

// NewNode creates a network namespace joined to this process's namespace
// by a veth pair, like a second host on a link: the host's end has
// 10.78.<i>.1/24, the node's end 10.78.<i>.2/24 (Addr4). i tells nodes of
// one test apart (0 to 255).
func NewNode(t testing.TB, i int) (node *Netns, hostAddr netip.Addr) {
	t.Helper()
	node = newNetns(t, fmt.Sprintf("10.78.%d.2", i), fmt.Sprintf("fd78:%d::2", i))
	hostAddr = netip.MustParseAddr(fmt.Sprintf("10.78.%d.1", i))
	hostEnd := fmt.Sprintf("nfnode%d", i)
	require.NoError(t, addVeth(hostEnd, "eth0", node.handle, 0))
	t.Cleanup(func() { _ = delLink(hostEnd) })
	require.NoError(t, AddrAdd(hostEnd, netip.PrefixFrom(hostAddr, 24)))
	require.NoError(t, linkUp(hostEnd))
	require.NoError(t, node.Do(func() error { return node.configure("eth0") }))
	return node, hostAddr
}

const portRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// SetPortRange sets the namespace's ephemeral port range
// (net.ipv4.ip_local_port_range), from which connect() and bind() with
// port 0 choose ports.
func (n *Netns) SetPortRange(t testing.TB, low, high uint16) {
	t.Helper()
	require.NoError(t, n.Do(func() error {
		return os.WriteFile(portRangeFile, fmt.Appendf(nil, "%d %d", low, high), 0)
	}))
}

// PortRange returns the ephemeral port range of ns (nil: this process's
// namespace), as /proc/sys shows it.
func PortRange(t testing.TB, ns *Netns) (low, high uint16) {
	t.Helper()
	read := func() error {
		b, err := os.ReadFile(portRangeFile)
		if err != nil {
			return err
		}
		_, err = fmt.Sscan(string(b), &low, &high)
		return err
	}
	if ns == nil {
		require.NoError(t, read())
	} else {
		require.NoError(t, ns.Do(read))
	}
	return low, high
}
