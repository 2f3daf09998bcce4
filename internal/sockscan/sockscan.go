//go:build linux

// Package sockscan reads the TCP sockets that were already open when the
// receiver started, which the kernel programs never saw a handshake of: their
// direction (from the kernel's socket table, sock_diag) and their owner (from
// /proc). Records of those sockets are matched by socket cookie.
package sockscan

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Direction of a socket's connection, from the local socket's view.
type Direction int

// Directions a scan tells apart.
const (
	Unknown Direction = iota
	Incoming
	Outgoing
)

// Socket is what the scan learned of one socket.
type Socket struct {
	Direction  Direction
	PID        int    // 0: no process in the cgroup holds it
	Executable string // base name of the process's executable
}

const stateListen = 10 // TCP_LISTEN

// Scan returns, by cookie, the TCP sockets of every network namespace that a
// process in cgroupPath (or below it) lives in. A socket whose local address
// and port belong to a listener (a wildcard or dual-stack bind included) is
// incoming, any other connected socket outgoing. This process's own sockets
// are always included, so that they can be told apart.
func Scan(procRoot, cgroupPath string) (map[uint64]Socket, error) {
	pids, err := cgroupPIDs(cgroupPath)
	if err != nil {
		return nil, err
	}
	pids = append([]int{os.Getpid()}, pids...)
	owners := map[uint64]owner{}   // socket inode -> process
	namespaces := map[uint64]int{} // netns inode -> a process in it
	for _, pid := range pids {
		proc := filepath.Join(procRoot, strconv.Itoa(pid))
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(proc, "ns", "net"), &st); err != nil {
			continue // the process is gone
		}
		if _, ok := namespaces[st.Ino]; !ok {
			namespaces[st.Ino] = pid
		}
		socketOwners(proc, pid, owners)
	}

	out := map[uint64]Socket{}
	var errs []error
	for _, pid := range namespaces {
		socks, err := tcpSockets(pid)
		if err != nil {
			errs = append(errs, fmt.Errorf("sockets of the network namespace of process %d: %w", pid, err))
			continue
		}
		classify(socks, owners, out)
	}
	return out, errors.Join(errs...)
}

type owner struct {
	pid int
	exe string
}

// cgroupPIDs lists the processes in the cgroup and its descendants.
func cgroupPIDs(cgroupPath string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(cgroupPath, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a cgroup removed while walking
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list processes of %s: %w", cgroupPath, err)
	}
	return pids, nil
}

// socketOwners maps the socket inodes that the process holds to it.
func socketOwners(proc string, pid int, owners map[uint64]owner) {
	fds, err := os.ReadDir(filepath.Join(proc, "fd"))
	if err != nil {
		return
	}
	var exe string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(proc, "fd", fd.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:[") {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]"), 10, 64)
		if err != nil {
			continue
		}
		if _, ok := owners[ino]; ok {
			continue // shared after fork: the first process found keeps it
		}
		if exe == "" {
			path, _ := os.Readlink(filepath.Join(proc, "exe"))
			exe = filepath.Base(strings.TrimSuffix(path, " (deleted)"))
		}
		owners[ino] = owner{pid, exe}
	}
}

// tcpSockets dumps the TCP sockets of the network namespace of pid.
func tcpSockets(pid int) ([]*netlink.Socket, error) {
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var all []*netlink.Socket
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := h.SocketDiagTCP(family)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
		all = append(all, socks...)
	}
	return all, nil
}

type bind struct {
	addr netip.Addr // unspecified: every address
	port uint16
}

// classify adds the connected sockets of one namespace to out.
func classify(socks []*netlink.Socket, owners map[uint64]owner, out map[uint64]Socket) {
	listening := map[bind]bool{}
	for _, s := range socks {
		if s.State == stateListen {
			listening[bind{addr(s.ID.Source), s.ID.SourcePort}] = true
		}
	}
	for _, s := range socks {
		if s.State == stateListen {
			continue
		}
		local := addr(s.ID.Source)
		dir := Outgoing
		wildcard4, wildcard6 := bind{netip.IPv4Unspecified(), s.ID.SourcePort}, bind{netip.IPv6Unspecified(), s.ID.SourcePort}
		if listening[bind{local, s.ID.SourcePort}] || listening[wildcard6] || local.Is4() && listening[wildcard4] {
			dir = Incoming
		}
		sock := Socket{Direction: dir}
		if o, ok := owners[uint64(s.INode)]; ok && s.INode != 0 {
			sock.PID, sock.Executable = o.pid, o.exe
		}
		out[uint64(s.ID.Cookie[0])|uint64(s.ID.Cookie[1])<<32] = sock
	}
}

// addr returns the address as on the wire: sock_diag reports the IPv4
// traffic of a dual-stack socket with IPv4-mapped addresses.
func addr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
