//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/moby/sys/mountinfo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// Each test makes a leftover of one kind, checks that the comparison
// names it, removes it and checks that it is no longer named. Other
// things on the machine may change meanwhile (other test runs), so the
// tests look only for what they made, except in a network namespace of
// their own, where nothing else happens.

func read(t *testing.T, f func() ([]object, error)) *snapshot {
	t.Helper()
	objs, err := f()
	require.NoError(t, err)
	return snapshotOf(objs...)
}

// named returns "kind id" of each object.
func named(objs []object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, string(o.kind)+" "+o.id)
	}
	return out
}

// find returns the object of kind whose id starts with prefix.
func find(objs []object, k kind, prefix string) (object, bool) {
	for _, o := range objs {
		if o.kind == k && strings.HasPrefix(o.id, prefix) {
			return o, true
		}
	}
	return object{}, false
}

// netnsFD returns a file descriptor of the namespace, closed after the test.
func netnsFD(t *testing.T, ns *testnet.Netns) int {
	t.Helper()
	var fd int
	require.NoError(t, ns.Do(func() (err error) {
		fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	}))
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestFirewallLeftovers(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testnet.NewNetns(t)
	fd := netnsFD(t, ns)
	readFirewall := func() ([]object, error) { return firewall(fd) }
	before := read(t, readFirewall)

	// What netavark makes: a nat table with a masquerade rule, which turns
	// on connection tracking.
	conn, err := nftables.New(nftables.WithNetNSFd(fd))
	require.NoError(t, err)
	table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "hostcheck_test"})
	chain := conn.AddChain(&nftables.Chain{Name: "post", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{&expr.Masq{}}})
	require.NoError(t, conn.Flush())

	left := compare(before, read(t, readFirewall)).left
	assert.Contains(t, named(left), "nftables table ip hostcheck_test")
	c, ok := find(left, kindNftChain, "ip hostcheck_test post")
	assert.True(t, ok, "chain not found in %v", named(left))
	assert.Equal(t, "type nat hook postrouting priority 100", c.detail)
	r, ok := find(left, kindNftRule, "ip hostcheck_test post handle ")
	assert.True(t, ok, "rule not found in %v", named(left))
	assert.Equal(t, "Masq", r.detail)

	conn.DelTable(table)
	require.NoError(t, conn.Flush())
	assert.True(t, compare(before, read(t, readFirewall)).empty())

	// A legacy table is made by asking the kernel about it; it stays until
	// the namespace goes.
	require.NoError(t, ns.Do(func() error { return askForLegacyTable("nat") }))
	assert.Equal(t, []string{"x_tables (legacy iptables) table ipv4 nat"}, named(compare(before, read(t, readFirewall)).left))
}

// askForLegacyTable asks for the x_tables table's information
// (IPT_SO_GET_INFO), as iptables-legacy -L does, which makes the table in
// this thread's network namespace.
func askForLegacyTable(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	const iptSoGetInfo = 64
	var info [84]byte // struct ipt_getinfo
	copy(info[:], name)
	size := uint32(len(info))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_IP, iptSoGetInfo,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return fmt.Errorf("IPT_SO_GET_INFO %s: %w", name, errno)
	}
	return nil
}

func TestCgroupLeftovers(t *testing.T) {
	testenv.RequireRoot(t)
	h := &host{self: os.Getpid()}
	readCgroups := func() ([]object, error) {
		procs, err := readProcesses()
		if err != nil {
			return nil, err
		}
		return cgroups(h.notOursByName(procs))
	}
	root, err := cgroupv2.Root()
	require.NoError(t, err)
	mkdir := func(path string) {
		require.NoError(t, os.Mkdir(path, 0o755))
		t.Cleanup(func() { _ = os.Remove(path) })
	}
	before := read(t, readCgroups)

	mine := filepath.Join(root, fmt.Sprintf("netflowtcpend-hostcheck-test-%d", os.Getpid()))
	mkdir(mine)
	mkdir(filepath.Join(mine, "child"))
	// Named after a live process that is not this one: another run's.
	others := filepath.Join(root, "netflowtcpend-hostcheck-test-1")
	mkdir(others)
	// systemd's: not compared.
	unit := filepath.Join(root, "hostcheck-test.scope")
	mkdir(unit)
	v1, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	require.NoError(t, err)
	var mineV1 string
	if len(v1) > 0 {
		mineV1 = filepath.Join(v1[0].Mountpoint, filepath.Base(mine))
		mkdir(mineV1)
	}

	d := compare(before, read(t, readCgroups))
	assert.Contains(t, named(d.left), "cgroup "+mine)
	assert.Contains(t, named(d.left), "cgroup "+filepath.Join(mine, "child"))
	if mineV1 != "" {
		assert.Contains(t, named(d.left), "cgroup "+mineV1)
	}
	assert.NotContains(t, named(d.left), "cgroup "+others)
	assert.Contains(t, named(d.ignored), "cgroup "+others)
	assert.NotContains(t, named(d.left), "cgroup "+unit)

	for _, p := range []string{filepath.Join(mine, "child"), mine, others, unit, mineV1} {
		if p != "" {
			require.NoError(t, os.Remove(p))
		}
	}
	d = compare(before, read(t, readCgroups))
	for _, p := range []string{mine, mineV1} {
		assert.NotContains(t, named(d.left), "cgroup "+p)
	}
}

func TestNamespaceLeftovers(t *testing.T) {
	testenv.RequireRoot(t)
	names := t.TempDir()
	readNetns := func() ([]object, error) { return namedNetns(names) }
	before := read(t, readNetns)

	// ip netns add: a file in /run/netns with a namespace bound to it.
	name := filepath.Join(names, "hostcheck-test")
	require.NoError(t, os.WriteFile(name, nil, 0o444))
	done := make(chan error)
	go func() {
		// The thread ends with the goroutine, in the namespace it made.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		done <- unix.Mount("/proc/thread-self/ns/net", name, "", unix.MS_BIND, "")
	}()
	require.NoError(t, <-done)
	t.Cleanup(func() { _ = unix.Unmount(name, unix.MNT_DETACH) })

	left := compare(before, read(t, readNetns)).left
	assert.Contains(t, named(left), "named network namespace "+name)
	bound, ok := find(left, kindNetnsMount, name)
	require.True(t, ok, "not found in %v", named(left))
	assert.True(t, strings.HasPrefix(bound.detail, "net:["), bound.detail)

	require.NoError(t, unix.Unmount(name, unix.MNT_DETACH))
	require.NoError(t, os.Remove(name))
	assert.Empty(t, named(compare(before, read(t, readNetns)).left))
}

func TestLinkLeftovers(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testnet.NewNetns(t)
	fd := netnsFD(t, ns)
	readLinks := func() ([]object, error) { return links(fd) }
	before := read(t, readLinks)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hc0"}, PeerName: "hc1"}
	require.NoError(t, ns.Do(func() error { return netlink.LinkAdd(veth) }))

	left := compare(before, read(t, readLinks)).left
	for _, name := range []string{"hc0 index ", "hc1 index "} {
		l, ok := find(left, kindLink, name)
		if assert.True(t, ok, "%s not found in %v", name, named(left)) {
			assert.Contains(t, l.detail, "veth")
		}
	}
	require.NoError(t, ns.Do(func() error { return netlink.LinkDel(veth) }))
	assert.True(t, compare(before, read(t, readLinks)).empty())
}

func TestMountLeftovers(t *testing.T) {
	testenv.RequireRoot(t)
	before := read(t, mounts)
	dir := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	left := compare(before, read(t, mounts)).left
	_, ok := find(left, kindMount, dir+" (tmpfs")
	assert.True(t, ok, "not found in %v", named(left))
	require.NoError(t, unix.Unmount(dir, 0))
	_, ok = find(compare(before, read(t, mounts)).left, kindMount, dir+" ")
	assert.False(t, ok)
}

func readBPF() ([]object, error) {
	procs, err := readProcesses()
	if err != nil {
		return nil, err
	}
	return bpfObjects(procs)
}

// program loads a program that does nothing but return verdict.
func program(t *testing.T, typ ebpf.ProgramType, verdict int32) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "hostcheck_test", Type: typ, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, verdict), asm.Return()}})
	require.NoError(t, err)
	return p
}

func programID(t *testing.T, p *ebpf.Program) string {
	t.Helper()
	info, err := p.Info()
	require.NoError(t, err)
	id, ok := info.ID()
	require.True(t, ok)
	return fmt.Sprint(id)
}

// gone waits until no object of kind with id prefix is left (the kernel
// frees a program after its last reference asynchronously).
func gone(t *testing.T, before *snapshot, k kind, id string) {
	t.Helper()
	assert.Eventually(t, func() bool {
		_, left := find(compare(before, read(t, readBPF)).left, k, id)
		return !left
	}, 10*time.Second, 100*time.Millisecond, "%s %s is still left", k, id)
}

func TestBPFLeftovers(t *testing.T) {
	testenv.RequireRoot(t)
	t.Run("held by a process", func(t *testing.T) {
		before := read(t, readBPF)
		p := program(t, ebpf.SocketFilter, 0)
		defer p.Close()
		d := compare(before, read(t, readBPF))
		id := programID(t, p)
		_, left := find(d.left, kindBPFProgram, id)
		assert.False(t, left, "a program this process holds is its own to free")
		held, ok := find(d.ignored, kindBPFProgram, id)
		require.True(t, ok)
		assert.Equal(t, fmt.Sprintf("held by process %d (hostcheck.test)", os.Getpid()), held.notOurs)
	})
	t.Run("pinned", func(t *testing.T) {
		fs := filepath.Join(t.TempDir(), "bpf")
		require.NoError(t, os.Mkdir(fs, 0o700))
		require.NoError(t, unix.Mount("bpf", fs, "bpf", 0, ""))
		t.Cleanup(func() { _ = unix.Unmount(fs, unix.MNT_DETACH) })
		before := read(t, readBPF)
		p := program(t, ebpf.SocketFilter, 0)
		pin := filepath.Join(fs, "hostcheck_test")
		require.NoError(t, p.Pin(pin))
		id := programID(t, p)
		require.NoError(t, p.Close())

		left := compare(before, read(t, readBPF)).left
		assert.Contains(t, named(left), "pinned BPF object "+pin)
		prog, ok := find(left, kindBPFProgram, id)
		require.True(t, ok, "not found in %v", named(left))
		assert.Contains(t, prog.detail, `SocketFilter "hostcheck_test", held by no process`)

		require.NoError(t, os.Remove(pin))
		gone(t, before, kindBPFProgram, id)
		assert.NotContains(t, named(compare(before, read(t, readBPF)).left), "pinned BPF object "+pin)
	})
	t.Run("attached to a cgroup", func(t *testing.T) {
		cg := testnet.NewCgroup(t)
		dir, err := os.Open(cg.Path)
		require.NoError(t, err)
		defer dir.Close()
		before := read(t, readBPF)
		// Attached without a link (BPF_PROG_ATTACH), the program stays
		// after its last file descriptor closes. It lets every packet
		// through, like the receiver's.
		p := program(t, ebpf.CGroupSKB, 1)
		opts := link.RawAttachProgramOptions{Target: int(dir.Fd()), Program: p, Attach: ebpf.AttachCGroupInetEgress}
		require.NoError(t, link.RawAttachProgram(opts))
		id := programID(t, p)
		require.NoError(t, p.Close())

		left := compare(before, read(t, readBPF)).left
		prog, ok := find(left, kindBPFProgram, id)
		require.True(t, ok, "not found in %v", named(left))
		assert.Contains(t, prog.detail, fmt.Sprintf("attached to cgroup %s (CGroupInetEgress)", cg.Path))

		p, err = ebpf.NewProgramFromID(ebpf.ProgramID(prog.idNumber(t)))
		require.NoError(t, err)
		require.NoError(t, link.RawDetachProgram(link.RawDetachProgramOptions{Target: opts.Target, Program: p, Attach: opts.Attach}))
		require.NoError(t, p.Close())
		gone(t, before, kindBPFProgram, id)
	})
}

func (o object) idNumber(t *testing.T) uint32 {
	t.Helper()
	var id uint32
	_, err := fmt.Sscan(o.id, &id)
	require.NoError(t, err)
	return id
}

func TestTempFileLeftovers(t *testing.T) {
	runTemp, shared := t.TempDir(), t.TempDir()
	hadBefore := filepath.Join(shared, "state-before")
	require.NoError(t, os.WriteFile(hadBefore, nil, 0o644))
	readTemp := func() ([]object, error) { return tempFiles(runTemp, []string{filepath.Join(shared, "state*")}) }
	before := read(t, readTemp)

	require.NoError(t, os.Mkdir(filepath.Join(runTemp, "otelcol-distribution1"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(shared, "state-new"), nil, 0o644))
	require.NoError(t, os.Remove(hadBefore))
	d := compare(before, read(t, readTemp))
	assert.Equal(t, []string{"container tool state " + filepath.Join(shared, "state-new"),
		"temporary file " + filepath.Join(runTemp, "otelcol-distribution1")}, named(d.left))
	assert.Equal(t, []string{"container tool state " + hadBefore}, named(d.removed))

	require.NoError(t, os.Remove(filepath.Join(runTemp, "otelcol-distribution1")))
	require.NoError(t, os.Remove(filepath.Join(shared, "state-new")))
	require.NoError(t, os.WriteFile(hadBefore, nil, 0o644))
	assert.True(t, compare(before, read(t, readTemp)).empty())
}

// The command's processes that outlive it are named and ended; a signal
// hostcheck gets goes to the command, and the check carries on.
func TestProcessLeftovers(t *testing.T) {
	res, err := runCommand([]string{"sh", "-c", "sleep 60 & exit 3"}, os.Environ(), time.Second)
	require.NoError(t, err)
	assert.Equal(t, 3, res.code)
	assert.False(t, res.interrupted)
	require.Len(t, res.leftover, 1)
	assert.Equal(t, "sleep 60", res.leftover[0].cmdline)
	_, err = readProcess(res.leftover[0].pid)
	require.ErrorIs(t, err, os.ErrNotExist, "the leftover process was not ended")

	go func() {
		for range 100 {
			procs, _ := readProcesses()
			for _, p := range descendants(procs, os.Getpid()) {
				if p.comm == "sleep" {
					_ = unix.Kill(os.Getpid(), unix.SIGTERM)
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	res, err = runCommand([]string{"sleep", "30"}, os.Environ(), time.Second)
	require.NoError(t, err)
	assert.True(t, res.interrupted)
	assert.Equal(t, 128+int(unix.SIGTERM), res.code)
	assert.Empty(t, res.leftover)
}

// run, end to end: the command's leftover fails it, named, and the run's
// TMPDIR goes.
func TestRunFailsOnLeftovers(t *testing.T) {
	testenv.RequireRoot(t)
	var out bytes.Buffer
	saidTMPDIR := filepath.Join(t.TempDir(), "tmpdir")
	code, err := run([]string{"sh", "-c", `touch "$TMPDIR/left-by-the-command"; printf %s "$TMPDIR" >` + saidTMPDIR}, time.Second, false, &out)
	require.NoError(t, err)
	assert.Equal(t, 1, code)
	assert.Contains(t, out.String(), "hostcheck: the host differs after `sh -c touch")
	assert.Regexp(t, `temporary file \S+/hostcheck-\d+/left-by-the-command \(a file in the run's TMPDIR`, out.String())
	tmpdir, err := os.ReadFile(saidTMPDIR)
	require.NoError(t, err)
	assert.NoDirExists(t, string(tmpdir))
}
