//go:build linux

package receiver

import (
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// Containers that live for a moment: a job, a CI step, a function. Their
// cgroup is created after Start and removed right after their last
// connection, so no walk of the cgroup tree ever sees it; their records get
// the container's id all the same, from the kernel's report of the cgroup's
// creation. The tests walk the tree at Start only (the rewalk interval is an
// hour): what resolves a cgroup made later can only be that report.

const shortLivedID = "feedc0de0123456789abcdef0123456789abcdef0123456789abcdef01234567"

type cgroupHarness struct {
	*harness
	tel  *componenttest.Telemetry
	logs *observer.ObservedLogs
}

// startCgroupHarness starts a receiver that walks the cgroup tree only at
// Start, leaving out the optional programs named in without. With
// filterCgroups, it keeps only records whose cgroup it resolved to a path
// under the test's cgroup (an include filter, which uses the resolver).
func startCgroupHarness(t *testing.T, filterCgroups bool, without ...string) *cgroupHarness {
	t.Helper()
	h := &cgroupHarness{harness: newHarness(t), tel: componenttest.NewTelemetry()}
	t.Cleanup(func() { _ = h.tel.Shutdown(t.Context()) })
	core, logs := observer.New(zapcore.WarnLevel)
	h.logs = logs
	set := receivertest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = h.tel.NewTelemetrySettings()
	set.Logger = zap.New(core)
	s := Config{RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 200 * time.Millisecond}
	if filterCgroups {
		s.Filters.Include.Cgroups = []string{h.cg.Path}
	}
	h.startWithSettings(s, set, func(o *options) {
		o.rewalk = time.Hour
		o.without = append(o.without, without...)
	})
	return h
}

// counter returns the value of a counter of the receiver's telemetry, 0 if
// it was never added to.
func (h *cgroupHarness) counter(name string) int64 {
	h.t.Helper()
	m, err := h.tel.GetMetric("otelcol_" + name)
	if err != nil {
		return 0
	}
	var n int64
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		n += dp.Value
	}
	return n
}

// byCookie returns every record's container.id and attributes by socket
// cookie.
func (h *cgroupHarness) byCookie() map[uint64]cgroupRecord {
	out := map[uint64]cgroupRecord{}
	h.eachRecord(func(res pcommon.Resource, lr plog.LogRecord) {
		a := lr.Attributes().AsRaw()
		cid, _ := res.Attributes().Get(AttrContainerID)
		out[uint64(a[attrSocketCookie.String()].(int64))] = cgroupRecord{container: cid.Str(), cgroupID: a[attrCgroupID.String()].(int64)}
	})
	return out
}

type cgroupRecord struct {
	container string
	cgroupID  int64
}

func cgroupID(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(path, &st))
	return int64(st.Ino)
}

// The case: a helper process in a container's cgroup, made after
// Start, makes one connection, closes it and exits; the runtime removes
// the cgroup at once, before the receiver reads the record (it reads at
// its next tick, up to 200 ms later).
func TestContainerRemovedRightAfterItsConnection(t *testing.T) {
	h := startCgroupHarness(t, true)
	bin := helperBinary(t)
	srv := startHelper(t, bin, h.cg, nil, "serve", "127.0.0.1:0")
	ctr := h.cg.Child(t, "docker-"+shortLivedID+".scope")
	ctrID := cgroupID(t, ctr.Path)
	cli := startHelper(t, bin, ctr, nil, "connect", srv.Listening().String())
	cli.Socket()
	srv.Socket()
	srv.Say("wait-eof")
	srv.Expect("got")
	cli.Close() // closes its socket and exits
	require.NoError(t, ctr.Remove(), "the container's cgroup, removed as soon as it is empty")
	srv.Expect("eof")
	srv.Close()
	h.stop()

	got := h.byCookie()
	require.Contains(t, got, cli.Cookie, "kept by the cgroup filter: its cgroup resolved under the test's")
	assert.Equal(t, cgroupRecord{container: shortLivedID, cgroupID: ctrID}, got[cli.Cookie])
	require.Contains(t, got, srv.Cookie)
	assert.Equal(t, cgroupRecord{cgroupID: cgroupID(t, h.cg.Path)}, got[srv.Cookie], "no container")

	rel := strings.TrimPrefix(ctr.Path, mustRoot(t))
	path, ok := h.rcv.cgroups.Path(uint64(ctrID))
	assert.True(t, ok)
	assert.Equal(t, rel, path)
	s := h.rcv.cgroups.Stats()
	assert.Equal(t, uint64(1), s.Walks, "the tree was walked at Start only")
	assert.NotZero(t, s.Learned)
	assert.NotZero(t, h.counter("netflowtcpend_cgroups_learned"))
	assert.Zero(t, h.counter("netflowtcpend_records_cgroup_unresolved"))
	assert.Zero(t, h.counter("netflowtcpend_records_filtered"))
}

// The collector in a cgroup namespace of its own, with its own cgroup2
// mount (a subtree of the hierarchy): the kernel's paths start at the
// hierarchy's root all the same (cgroup_path, not cgroup_path_ns), and the
// receiver places them under its mount through the parent. The test above
// runs again in such a namespace, rooted at a cgroup made for this test.
func TestContainerRemovedRightAfterItsConnectionInACgroupNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testnet.NewCgroup(t)
	root := mustRoot(t)
	dir, err := os.Open(ns.Path)
	require.NoError(t, err)
	defer dir.Close()
	script := `umount -l "$1" && mount -t cgroup2 none "$1" && readlink /proc/self/ns/cgroup && stat -c 'mount root inode %i' "$1" && exec "$2" -test.run '^TestContainerRemovedRightAfterItsConnection$' -test.count=1 -test.v`
	cmd := exec.Command("unshare", "--cgroup", "--mount", "--propagation", "private", "sh", "-c", script, "sh", root, os.Args[0])
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	cmd.Env = append(os.Environ(), "CI=true")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Logf("%s", out)
	assert.NotContains(t, string(out), "cgroup:[4026531835]", "not the initial cgroup namespace")
	assert.NotContains(t, string(out), "mount root inode 1\n", "the mount is a subtree, not the hierarchy's root")
	assert.Contains(t, string(out), "--- PASS: TestContainerRemovedRightAfterItsConnection")
}

func mustRoot(t *testing.T) string {
	t.Helper()
	root, err := cgroupv2.Root()
	require.NoError(t, err)
	return root
}

// shortLivedContainer makes a container's cgroup, whose first connection
// ends within milliseconds of its creation, then removes it. It returns
// the cgroup's id and how long after the mkdir the connection ended.
func shortLivedContainer(t *testing.T, h *harness, name string) (id int64, took time.Duration) {
	t.Helper()
	var ln *net.TCPListener
	var err error
	h.cg.Run(t, func() {
		ln, err = testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
		require.NoError(t, err)
	})
	defer ln.Close()

	made := time.Now()
	ctr := h.cg.Child(t, name)
	var client *net.TCPConn
	ctr.Run(t, func() {
		client, err = testnet.Dial(testnet.AddrPort(ln.Addr()))
		require.NoError(t, err)
	})
	server, err := ln.AcceptTCP()
	require.NoError(t, err)
	require.NoError(t, client.Close()) // its FIN: the end of the container's connection
	took = time.Since(made)
	id = cgroupID(t, ctr.Path)
	require.NoError(t, ctr.Remove())

	_, _ = io.Copy(io.Discard, server)
	require.NoError(t, server.Close())
	return id, took
}

// A container whose first connection ends within milliseconds of its
// cgroup's creation.
func TestFreshContainerConnectionEndingAtOnce(t *testing.T) {
	h := startCgroupHarness(t, true)
	id, took := shortLivedContainer(t, h.harness, "cri-containerd-"+shortLivedID+".scope")
	t.Logf("the connection ended %v after the cgroup was made", took)
	h.stop()

	var found bool
	for _, r := range h.byCookie() {
		if r.cgroupID == id {
			found = true
			assert.Equal(t, shortLivedID, r.container)
		}
	}
	assert.True(t, found, "the container's record, kept by the cgroup filter")
	assert.Equal(t, uint64(1), h.rcv.cgroups.Stats().Walks)
	assert.Zero(t, h.counter("netflowtcpend_records_cgroup_unresolved"))
}

// The same container on a kernel without the cgroup_mkdir program: the
// walk at Start predates the cgroup, and walks are an hour apart here, so
// its record has no container.id. This is what the tests above would see
// without the program; the start says what is missing.
func TestWithoutTheCgroupProgramShortLivedContainersLoseTheirID(t *testing.T) {
	h := startCgroupHarness(t, false, bpf.CgroupProgram)
	id, _ := shortLivedContainer(t, h.harness, "cri-containerd-"+shortLivedID+".scope")
	h.stop()

	var found bool
	for _, r := range h.byCookie() {
		if r.cgroupID == id {
			found = true
			assert.Empty(t, r.container, "its cgroup was never walked")
		}
	}
	assert.True(t, found, "the container's record, without a filter")
	assert.NotZero(t, h.counter("netflowtcpend_records_cgroup_unresolved"))
	assert.Zero(t, h.rcv.cgroups.Stats().Learned)

	warnings := h.logs.FilterMessageSnippet("lacks BPF features").All()
	require.Len(t, warnings, 1, "one warning at start")
	fields := warnings[0].ContextMap()
	assert.Contains(t, fields["programs"], bpf.CgroupProgram)
	assert.Contains(t, fields["missing"], "the cgroup_mkdir tracepoint (tp_btf)")
	assert.Contains(t, fields["absent"], "the container.id and cgroup path of containers created and removed between two walks of the cgroup tree")
}

// A cgroup learned from the kernel after a record found its id unknown
// resolves for the next record: the read loop's cache holds only ids the
// resolver knew.
func TestLearnedCgroupIsNotHiddenByTheCache(t *testing.T) {
	root := t.TempDir()
	r := newTestReceiver(t, testConfig, nil)
	r.cgroups = cgroupv2.NewPaths(root, time.Hour)
	r.cgroups.Walk()
	l := testLoop(r, nil)

	const id = 1 << 40
	assert.Equal(t, cgroupInfo{}, l.enrich.cgroup(id), "not known yet")
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(root, &st))
	c := bpf.CgroupCreated{ID: id, ParentID: st.Ino, Path: "/system.slice/docker-" + shortLivedID + ".scope"}
	c.PathLen = len(c.Path)
	l.add(c.Encode())
	assert.Equal(t, cgroupInfo{path: "/docker-" + shortLivedID + ".scope", container: shortLivedID}, l.enrich.cgroup(id),
		"placed under the mount point through its parent")

	// The cache starts over rather than grow without end.
	for i := range uint64(2 * maxCgroupInfo) {
		require.True(t, r.cgroups.Learn(1<<41+i, st.Ino, "/system.slice/c"))
		assert.Equal(t, "/c", l.enrich.cgroup(1<<41+i).path)
		require.LessOrEqual(t, l.enrich.cgroupInfo.Len(), maxCgroupInfo)
	}
}

// A record cut short by the kernel is not learned (its path names another
// cgroup), and a malformed one is counted.
func TestCgroupRecordsNotLearned(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "a"), 0o755))
	r := newTestReceiver(t, testConfig, nil)
	r.cgroups = cgroupv2.NewPaths(root, time.Hour)
	r.cgroups.Walk()
	l := testLoop(r, nil)
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(filepath.Join(root, "a"), &st))

	long := bpf.CgroupCreated{ID: 7, ParentID: st.Ino, Path: "/a/" + strings.Repeat("x", 600), PathLen: 603, Truncated: true}
	l.add(long.Encode())
	_, ok := r.cgroups.Path(7)
	assert.False(t, ok)
	l.add(long.Encode()[:100])
	assert.Equal(t, uint64(1), l.losses.unwarnedBad)
	assert.Zero(t, r.cgroups.Stats().Learned)
}
