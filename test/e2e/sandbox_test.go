//go:build linux

package e2e

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/otlpsink"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testproc"
)

// The built collector with least privilege, in a sandbox made the way a
// container runtime makes one for deploy/daemonset.yaml, without the image:
//
//   - credentials as the image and the DaemonSet give them: user and group
//     65534, no supplementary groups, no_new_privs, the bounding set cut to
//     the three documented capabilities, none inheritable or ambient, and the
//     three as file capabilities (effective) on a copy of the binary; the
//     collector then has exactly the three, permitted and effective, as
//     under containerd's CRI (checkCredentials). setpriv (util-linux)
//     drops to that user; it keeps root's permitted set until the exec,
//     where the runtime keeps the three, which no_new_privs lets the file
//     capabilities take either way (the runc test runs the exact spec);
//   - new mount, cgroup and UTS namespaces, a network namespace of its own
//     (a pod's, joined to the host by a veth pair; the OTLP sink listens on
//     the host's end), and the PID namespace of the variant: the host's
//     (hostPID: true) or one of its own;
//   - in the cgroup namespace rooted at the pod's cgroup: a read-only sysfs
//     of its network namespace at /sys with its own cgroup v2 mount at
//     /sys/fs/cgroup, and over it the DaemonSet's hostPath volume: the
//     host's /sys/fs/cgroup, rbind, read-only at its top (on a hybrid host
//     the v2 hierarchy at unified/ comes along);
//   - a /proc of its PID namespace, with runc's masked and read-only paths.
//
// The rest of the file system is the host's (the image test runs the image
// itself). The collector watches a test cgroup that also holds its own pod,
// so exclude_self has its exports to leave out.

// sandboxScript runs as root inside the new namespaces and ends by
// exec'ing the collector through setpriv. Arguments: a scratch directory,
// the host name, the collector, its configuration, the bounding set, and
// a memlock limit ("" leaves the limit as it is; a runtime sets it with
// --ulimit memlock=...).
const sandboxScript = `set -eu
stage=$1 node=$2 bin=$3 config=$4 caps=$5 memlock=$6
if [ -n "$memlock" ]; then ulimit -l "$memlock"; fi
mount --rbind /sys/fs/cgroup "$stage"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount -t cgroup2 -o ro,nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
mount --rbind "$stage" /sys/fs/cgroup
mount -o remount,bind,ro /sys/fs/cgroup
umount -l "$stage"
mount -t proc -o nosuid,nodev,noexec proc /proc
for p in /proc/kcore /proc/keys /proc/latency_stats /proc/timer_list /proc/timer_stats /proc/sched_debug; do
	if [ -e "$p" ]; then mount --bind /dev/null "$p"; fi
done
for p in /proc/acpi /proc/asound /proc/scsi /sys/firmware; do
	if [ -d "$p" ]; then mount -t tmpfs -o ro tmpfs "$p"; fi
done
for p in /proc/bus /proc/fs /proc/irq /proc/sys /proc/sysrq-trigger; do
	if [ -e "$p" ]; then mount --bind -o ro "$p" "$p"; fi
done
hostname "$node"
exec setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all --bounding-set="-all,$caps" --no-new-privs \
	"$bin" --config "$config"
`

// sandboxCaps are the three documented capabilities (docs/kubernetes.md),
// as setpriv names them.
var sandboxCaps = []string{"bpf", "net_admin", "perfmon"}

// capBits maps setpriv's names to capability numbers.
var capBits = map[string]uint{"bpf": capBPF, "net_admin": capNetAdmin, "perfmon": capPerfmon}

// sandbox is what one run of the collector in the sandbox needs.
type sandbox struct {
	dir      string // readable by the collector's user
	bin      string // the collector, with file capabilities
	config   string
	hostPID  bool
	hostname string
	memlock  string // the collector's memlock limit (ulimit -l); "": as it is
}

// newSandbox copies the collector into a directory its user can read and
// gives the copy the file capabilities caps (setpriv's names).
func newSandbox(t *testing.T, bin string, hostPID bool, caps []string) *sandbox {
	t.Helper()
	requireTool(t, "setpriv")
	requireTool(t, "unshare")
	dir, err := os.MkdirTemp("", "netflowtcpend-sandbox")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "stage"), 0o755))
	s := &sandbox{dir: dir, bin: filepath.Join(dir, "otelcol-netflowtcpend"), hostPID: hostPID, hostname: "netflowtcpend-sandbox"}
	testproc.CopyExecutable(t, bin, s.bin)
	var permitted uint64
	for _, c := range caps {
		permitted |= 1 << capBits[c]
	}
	// struct vfs_cap_data, revision 2, effective: what setcap writes.
	xattr := binary.LittleEndian.AppendUint32(nil, 0x02000000|1)
	xattr = binary.LittleEndian.AppendUint32(xattr, uint32(permitted))
	xattr = binary.LittleEndian.AppendUint32(xattr, 0)
	xattr = binary.LittleEndian.AppendUint32(xattr, uint32(permitted>>32))
	xattr = binary.LittleEndian.AppendUint32(xattr, 0)
	require.NoError(t, unix.Setxattr(s.bin, "security.capability", xattr, 0))
	return s
}

// writeConfig writes the collector's configuration, readable by its user.
func (s *sandbox) writeConfig(t *testing.T, config string) {
	t.Helper()
	s.config = filepath.Join(s.dir, "config.yaml")
	require.NoError(t, os.WriteFile(s.config, []byte(config), 0o644))
}

// command returns the sandbox's command: started in the pod's cgroup (a
// runtime puts the container there before it makes the cgroup namespace),
// with the bounding set caps.
func (s *sandbox) command(t *testing.T, pod *testnet.Cgroup, caps []string) *exec.Cmd {
	t.Helper()
	bounding := "+" + strings.Join(caps, ",+")
	cmd := exec.Command("unshare", "--mount", "--cgroup", "--uts", "--propagation", "private",
		"/bin/sh", "-c", sandboxScript, "sandbox", filepath.Join(s.dir, "stage"), s.hostname, s.bin, s.config, bounding, s.memlock)
	cgroup, err := os.Open(pod.Path)
	require.NoError(t, err)
	t.Cleanup(func() { cgroup.Close() })
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgroup.Fd())}
	if !s.hostPID {
		// unshare is then PID 1 of the new namespace, and so, after
		// the execs, is the collector.
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
	}
	return cmd
}

// httpSink is an OTLP/HTTP endpoint that keeps records with their
// resources and closes every connection after its response, so that the
// collector's exports end connections while it runs: exclude_self must
// leave them out.
type httpSink struct {
	mu      sync.Mutex
	records []sinkRecord
	conns   atomic.Int64
	port    uint16
	addr    string
}

func newHTTPSink(t *testing.T, addr netip.Addr) *httpSink {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	require.NoError(t, err)
	s := &httpSink{addr: ln.Addr().String(), port: testnet.AddrPort(ln.Addr()).Port()}
	srv := &http.Server{
		Handler: otlpsink.Handler(func(ld plog.Logs) {
			s.mu.Lock()
			defer s.mu.Unlock()
			otlpsink.ForEach(ld, func(res pcommon.Resource, lr plog.LogRecord) {
				s.records = append(s.records, sinkRecord{res, lr})
			})
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	srv.SetKeepAlivesEnabled(false)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return s
}

// byCookie returns the records of each socket.
func (s *httpSink) byCookie() map[uint64][]sinkRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[uint64][]sinkRecord{}
	for _, r := range s.records {
		if v, ok := r.record.Attributes().Get("netflow.socket.cookie"); ok {
			out[uint64(v.Int())] = append(out[uint64(v.Int())], r)
		}
	}
	return out
}

// ofPort returns the records with port at either end.
func (s *httpSink) ofPort(port uint16) []sinkRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sinkRecord
	for _, r := range s.records {
		for _, k := range []string{"source.port", "destination.port"} {
			if v, ok := r.record.Attributes().Get(k); ok && v.Int() == int64(port) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// containerID returns a random 64-hex-digit container id.
func containerID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// What the test expects of one socket's record.
type wantRecord struct {
	name        string
	direction   string
	pid         int64 // 0: no process attributes
	exe         string
	containerID string
	observed    bool     // netflow.start_observed
	domains     []string // netflow.destination.domains; nil: not checked
}

// checkRecord checks the one record of a socket, attribute by attribute,
// and logs which attributes are complete.
func checkRecord(t *testing.T, got []sinkRecord, want wantRecord, hostname string) {
	t.Helper()
	if !assert.Len(t, got, 1, "%s: exactly one record", want.name) {
		return
	}
	a, res := got[0].record.Attributes(), got[0].resource.Attributes()
	str := func(m pcommon.Map, k string) string {
		v, ok := m.Get(k)
		if !ok {
			return "<absent>"
		}
		return v.AsString()
	}
	assert.Equal(t, want.direction, str(a, "netflow.direction"), "%s: direction", want.name)
	if want.pid != 0 {
		assert.Equal(t, fmt.Sprint(want.pid), str(a, "process.pid"), "%s: process.pid", want.name)
		assert.Equal(t, want.exe, str(a, "process.executable.name"), "%s: process.executable.name", want.name)
	} else {
		assert.Equal(t, "<absent>", str(a, "process.pid"), "%s: process.pid", want.name)
		assert.Equal(t, "<absent>", str(a, "process.executable.name"), "%s: process.executable.name", want.name)
	}
	assert.Equal(t, want.containerID, str(res, "container.id"), "%s: container.id", want.name)
	assert.Equal(t, hostname, str(res, "host.name"), "%s: host.name", want.name)
	assert.Equal(t, fmt.Sprint(want.observed), str(a, "netflow.start_observed"), "%s: netflow.start_observed", want.name)
	if want.domains != nil {
		var domains []string
		if v, ok := a.Get("netflow.destination.domains"); ok && v.Type() == pcommon.ValueTypeSlice {
			for _, d := range v.Slice().AsRaw() {
				domains = append(domains, fmt.Sprint(d))
			}
		}
		assert.Equal(t, want.domains, domains, "%s: netflow.destination.domains", want.name)
	}
	t.Logf("%s: direction %s, process.pid %s, process.executable.name %s, container.id %.12s..., start_observed %s, destination.domains %s",
		want.name, str(a, "netflow.direction"), str(a, "process.pid"), str(a, "process.executable.name"),
		str(res, "container.id"), str(a, "netflow.start_observed"), str(a, "netflow.destination.domains"))
}

// checkSandbox checks, from the host, that the collector (pid) runs as the
// sandbox says: the DaemonSet's credentials (checkCredentials), and
// namespaces of its own but for the PID namespace with hostPID.
func checkSandbox(t *testing.T, pid int, podNS *testnet.Netns, pod *testnet.Cgroup, hostPID bool) {
	t.Helper()
	checkCredentials(t, pid)
	ns := func(p, kind string) string {
		l, err := os.Readlink(fmt.Sprintf("/proc/%s/ns/%s", p, kind))
		require.NoError(t, err)
		return l
	}
	self, collector := "self", fmt.Sprint(pid)
	for _, kind := range []string{"mnt", "cgroup", "uts"} {
		assert.NotEqual(t, ns(self, kind), ns(collector, kind), "%s namespace of its own", kind)
	}
	assert.Equal(t, fmt.Sprintf("net:[%d]", podNS.Inode()), ns(collector, "net"), "the pod's network namespace")
	if hostPID {
		assert.Equal(t, ns(self, "pid"), ns(collector, "pid"), "the host's PID namespace")
	} else {
		assert.NotEqual(t, ns(self, "pid"), ns(collector, "pid"), "a PID namespace of its own")
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		require.NoError(t, err)
		assert.Regexp(t, fmt.Sprintf(`(?m)^NSpid:\s+%d\s+1$`, pid), string(status), "PID 1 of its namespace")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	require.NoError(t, err)
	root, err := cgroupv2.Root()
	require.NoError(t, err)
	assert.Contains(t, string(b), "0::"+strings.TrimPrefix(pod.Path, root)+"\n", "in the pod's cgroup")
}

// kernelFeatures is what this kernel gives the receiver's programs, and what
// it lacks, as the receiver's Load finds them here.
func kernelFeatures(t *testing.T) (bpf.Features, []bpf.Unavailable) {
	t.Helper()
	objs, err := bpf.Load(bpf.Options{RingBufferSize: 1 << 16})
	require.NoError(t, err)
	defer objs.Close()
	return objs.Features, objs.Unavailable
}

// featureWarning is the start's one warning of what the kernel lacks.
const featureWarning = "lacks BPF features"

// checkWarnings checks the receiver's warnings: the one of the features
// this kernel lacks, naming each (if it lacks any), and want.
func checkWarnings(t *testing.T, log string, unavailable []bpf.Unavailable, want ...func(string)) {
	t.Helper()
	var others []string
	var features []string
	for _, w := range receiverWarnings(log) {
		if strings.Contains(w, featureWarning) {
			features = append(features, w)
		} else {
			others = append(others, w)
		}
	}
	if len(unavailable) == 0 {
		assert.Empty(t, features, "this kernel lacks nothing")
	} else if assert.Len(t, features, 1, "one warning of what this kernel lacks") {
		for _, u := range unavailable {
			assert.Contains(t, features[0], u.Feature)
		}
	}
	if assert.Len(t, others, len(want), "the receiver's other warnings") {
		for i, w := range want {
			w(others[i])
		}
	}
}

// failedStart runs the collector in the sandbox, which must fail to start,
// and returns its error line.
func failedStart(t *testing.T, s *sandbox, pod *testnet.Cgroup, caps []string, why string) string {
	t.Helper()
	cmd := s.command(t, pod, caps)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, testnet.NewNetns(t).Start(cmd))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.Error(t, err, "the collector started %s:\n%s", why, out.String())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the collector neither started nor failed in 60 s %s (%v):\n%s", why, <-done, out.String())
	}
	var failure string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "Error: ") {
			failure = l
		}
	}
	t.Logf("%s: %s", why, failure)
	return failure
}

// receiverWarnings returns the receiver's warnings in a collector's log.
func receiverWarnings(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "\twarn\t") && strings.Contains(l, `"otelcol.component.id": "`+receiverType+`"`) {
			out = append(out, l)
		}
	}
	return out
}

// TestLeastPrivilegeSandbox runs the built collector with exactly the
// three documented capabilities in the sandbox described above, and checks
// that every record is complete where docs/kubernetes.md says it is:
//
//   - a connection between two helper processes in a container's cgroup
//     (docker-<id>.scope), made after start: direction, owner process of
//     both sides, container.id;
//   - a connection open before start, between root's helper processes in
//     two other network namespaces, in another container's cgroup
//     (cri-containerd-<id>.scope): direction and owner from the scan at
//     start, container.id;
//   - a client in the first container asking a DNS server (dnsmasq in a
//     network namespace of its own) for a name, then connecting to the
//     answer: netflow.destination.domains;
//   - none of the collector's own exports (exclude_self).
//
// In the host's PID namespace (the DaemonSet) all of it is complete. In a
// PID namespace of its own the scan at start sees none of the helpers, so
// the connection open before start has direction unknown and no owner,
// and Start warns once; the rest is as complete.
func TestLeastPrivilegeSandbox(t *testing.T) {
	bin := collectorBinary(t)
	testenv.RequireRoot(t)
	dnsmasq := requireTool(t, "dnsmasq")
	for i, hostPID := range []bool{true, false} {
		name := map[bool]string{true: "host PID namespace", false: "PID namespace of its own"}[hostPID]
		t.Run(name, func(t *testing.T) { sandboxRun(t, bin, dnsmasq, hostPID, 41+i) })
	}
}

func sandboxRun(t *testing.T, bin, dnsmasq string, hostPID bool, node int) {
	t.Helper()
	// The pod's network namespace; the sink listens on the host's end.
	podNS, hostAddr := testnet.NewNode(t, node)
	sink := newHTTPSink(t, hostAddr)

	// The watched cgroup holds the collector's pod and two containers.
	watched := testnet.NewCgroup(t)
	pod := watched.Child(t, "collector-pod")
	newID, oldID := containerID(t), containerID(t)
	newCtr := watched.Child(t, "docker-"+newID+".scope")
	oldCtr := watched.Child(t, "cri-containerd-"+oldID+".scope")

	s := newSandbox(t, bin, hostPID, sandboxCaps)
	helpers := helperBinaries(t, s.dir)
	features, unavailable := kernelFeatures(t)
	t.Logf("what this kernel gives: %+v", features)

	// Open before start, across two other network namespaces.
	a, b := testnet.NewVethPair(t)
	oldSrv := startHelper(t, helpers, helperServer, oldCtr, b, "serve", "10.77.0.2:0")
	port := netip.MustParseAddrPort(oldSrv.Expect("listening")[0]).Port()
	oldCli := startHelper(t, helpers, helperClient, oldCtr, a, "connect", fmt.Sprintf("10.77.0.2:%d", port))
	oldCli.Socket()
	oldSrv.Socket()

	// A DNS server that knows alias.example.test -> www.example.test ->
	// 10.99.0.7, in a network namespace of its own.
	dnsNS := testnet.NewNetns(t)
	target := netip.MustParseAddr("10.99.0.7")
	dnsNS.AddLoopbackAddr(t, target)
	startDNSMasq(t, dnsmasq, dnsNS, target)

	s.writeConfig(t, fmt.Sprintf(`
receivers:
  %s:
    cgroup_path: %s
processors:
  batch:
    timeout: 100ms
exporters:
  otlp_http:
    endpoint: http://%s
    retry_on_failure:
      initial_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [%[1]s]
      processors: [batch]
      exporters: [otlp_http]
`, receiverType, watched.Path, sink.addr))
	if chargesMemlock {
		// A kernel that charges BPF memory to RLIMIT_MEMLOCK: without
		// CAP_SYS_RESOURCE the collector needs a memlock limit its maps
		// fit in, which only its runtime can give (docs/kubernetes.md,
		// "RLIMIT_MEMLOCK"). With the kernel's default before 5.16, 64
		// KiB, the error names both remedies.
		s.memlock = "64"
		failure := failedStart(t, s, pod, sandboxCaps, "with a memlock limit of 64 KiB, on a kernel that charges it")
		assert.Contains(t, failure, "charges BPF memory to RLIMIT_MEMLOCK")
		assert.Contains(t, failure, "CAP_SYS_RESOURCE")
		assert.Contains(t, failure, "ulimit -l unlimited")
		s.memlock = "unlimited"
	}
	collector := startCommand(t, podNS, s.command(t, pod, sandboxCaps))
	defer func() {
		if t.Failed() {
			t.Logf("the collector's log:\n%s", collector.Log())
		}
	}()
	checkSandbox(t, collector.PID(), podNS, pod, hostPID)

	// Made after start, over the host's loopback.
	newSrv := startHelper(t, helpers, helperServer, newCtr, nil, "serve", "127.0.0.1:0")
	addr := newSrv.Expect("listening")[0]
	newCli := startHelper(t, helpers, helperClient, newCtr, nil, "connect", addr)
	newCli.Socket()
	newSrv.Socket()
	exchange(newSrv, newCli)
	// Their records come in an export of their own: the sink closes its
	// connection, which exclude_self must leave out.
	waitForRecords(t, sink, newCli, newSrv)

	// The connection open before start ends now.
	exchange(oldSrv, oldCli)

	// A name resolved in the container, then connected to.
	var ln *net.TCPListener
	require.NoError(t, dnsNS.Do(func() (err error) {
		ln, err = testnet.Listen(netip.AddrPortFrom(target, 0))
		return err
	}))
	defer ln.Close()
	dnsCli := startHelper(t, helpers, helperClient, newCtr, dnsNS, "resolve",
		"127.0.53.1", "alias.example.test", fmt.Sprint(testnet.AddrPort(ln.Addr()).Port()))
	assert.Equal(t, []string{target.String()}, dnsCli.Expect("resolved"))
	dnsCli.Socket()
	server, err := ln.AcceptTCP()
	require.NoError(t, err)
	dnsCli.Close()
	require.NoError(t, readEnd(server))
	require.NoError(t, server.Close())

	waitForRecords(t, sink, oldCli, oldSrv, dnsCli)
	// Stopping flushes what is left: the record of any export connection
	// that ended before, had exclude_self missed it.
	stopCollector(t, collector)
	got := sink.byCookie()

	pidIf := func(h *helper) int64 {
		if hostPID {
			return h.PID()
		}
		return 0
	}
	openBefore := map[bool][2]string{true: {"outgoing", "incoming"}, false: {"unknown", "unknown"}}[hostPID]
	// The servers read what the clients send.
	newSrvPID := int64(0)
	if features.OwnerOfAccepted.Names(true, false) {
		newSrvPID = newSrv.PID()
	}
	for _, w := range []struct {
		h    *helper
		want wantRecord
	}{
		{newCli, wantRecord{"new connection, client", "outgoing", newCli.PID(), helperClient, newID, true, nil}},
		{newSrv, wantRecord{"new connection, server", "incoming", newSrvPID, helperServer, newID, true, nil}},
		{oldCli, wantRecord{"open before start, client", openBefore[0], pidIf(oldCli), helperClient, oldID, false, nil}},
		{oldSrv, wantRecord{"open before start, server", openBefore[1], pidIf(oldSrv), helperServer, oldID, false, nil}},
		{dnsCli, wantRecord{"after a DNS lookup", "outgoing", dnsCli.PID(), helperClient, newID, true,
			[]string{"alias.example.test", "www.example.test"}}},
	} {
		checkRecord(t, got[w.h.Cookie], w.want, s.hostname)
	}

	// exclude_self: the exports ended connections (the sink closes each
	// one), and none of them has a record.
	assert.GreaterOrEqual(t, sink.conns.Load(), int64(2), "exports over several connections")
	assert.Empty(t, sink.ofPort(sink.port), "records of the collector's own exports")

	// The host's hierarchy, where the DaemonSet's volume puts it, not the
	// container's own mount under it.
	root, err := cgroupv2.Root()
	require.NoError(t, err)
	assert.Contains(t, collector.Log(), fmt.Sprintf(`"cgroup_root": %q`, root))

	if hostPID {
		checkWarnings(t, collector.Log(), unavailable)
	} else {
		checkWarnings(t, collector.Log(), unavailable, func(w string) {
			assert.Contains(t, w, "PID namespace of its own")
			assert.Contains(t, w, "direction unknown and no owner")
			assert.Contains(t, w, "hostPID: true")
			assert.Contains(t, w, fmt.Sprintf(`"pid": 1, "kernel_pid": %d`, collector.PID()))
		})
	}
}

// waitForRecords waits until the sink has a record of each helper's socket.
func waitForRecords(t *testing.T, sink *httpSink, helpers ...*helper) {
	t.Helper()
	require.Eventually(t, func() bool {
		got := sink.byCookie()
		for _, h := range helpers {
			if len(got[h.Cookie]) == 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "a record of every helper's socket")
}

// startDNSMasq runs dnsmasq in ns on 127.0.53.1:53 with
// alias.example.test a CNAME of www.example.test, whose address is target,
// and waits until it answers.
func startDNSMasq(t *testing.T, dnsmasq string, ns *testnet.Netns, target netip.Addr) {
	t.Helper()
	var log lockedBuffer
	cmd := exec.Command(dnsmasq,
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--user=root", "--pid-file=", "--log-facility=-", "--log-queries",
		"--bind-interfaces", "--listen-address=127.0.53.1", "--port=53", "--local-ttl=300",
		"--host-record=www.example.test,"+target.String(),
		"--cname=alias.example.test,www.example.test")
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, ns.Start(cmd))
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq's log:\n%s", log.String())
		}
	})
	require.Eventually(t, func() bool {
		got, err := lookupA(ns, "127.0.53.1:53", "www.example.test")
		return err == nil && got == target
	}, 10*time.Second, 50*time.Millisecond, "dnsmasq never answered: %s", &log)
}

// lookupA asks server, from a socket in ns, for name's first IPv4 address.
// (Go's resolver would send from goroutines of its own, outside ns.)
func lookupA(ns *testnet.Netns, server, name string) (netip.Addr, error) {
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.Dial("udp", server)
		return err
	}); err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	q := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 4711, RecursionDesired: true})
	_ = q.StartQuestions()
	_ = q.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	query, err := q.Finish()
	if err != nil {
		return netip.Addr{}, err
	}
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write(query); err != nil {
		return netip.Addr{}, err
	}
	answer := make([]byte, 1500)
	n, err := conn.Read(answer)
	if err != nil {
		return netip.Addr{}, err
	}
	var p dnsmessage.Parser
	if _, err := p.Start(answer[:n]); err != nil {
		return netip.Addr{}, err
	}
	_ = p.SkipAllQuestions()
	for {
		h, err := p.AnswerHeader()
		if err != nil {
			return netip.Addr{}, fmt.Errorf("no A record for %s: %w", name, err)
		}
		if h.Type != dnsmessage.TypeA {
			_ = p.SkipAnswer()
			continue
		}
		r, err := p.AResource()
		if err != nil {
			return netip.Addr{}, err
		}
		return netip.AddrFrom4(r.A), nil
	}
}

// readEnd reads c until the peer closes it.
func readEnd(c net.Conn) error {
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// TestSandboxWithoutEachCapability measures that each of the documented
// three capabilities is needed: in the same sandbox, with one of them left
// out of both the file capabilities and the bounding set, the collector
// does not start, and its error names the one that is missing.
func TestSandboxWithoutEachCapability(t *testing.T) {
	bin := collectorBinary(t)
	testenv.RequireRoot(t)
	for _, missing := range sandboxCaps {
		t.Run(missing, func(t *testing.T) {
			var caps []string
			for _, c := range sandboxCaps {
				if c != missing {
					caps = append(caps, c)
				}
			}
			watched := testnet.NewCgroup(t)
			pod := watched.Child(t, "collector-pod")
			s := newSandbox(t, bin, true, caps)
			if chargesMemlock {
				s.memlock = "unlimited" // the capability alone is missing
			}
			s.writeConfig(t, fmt.Sprintf(`
receivers:
  %s:
    cgroup_path: %s
exporters:
  debug:
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [%[1]s]
      exporters: [debug]
`, receiverType, watched.Path))
			failure := failedStart(t, s, pod, caps, "without CAP_"+strings.ToUpper(missing))
			assert.Contains(t, failure, "not permitted to load BPF programs")
			assert.Contains(t, failure, "(missing CAP_"+strings.ToUpper(missing))
			assert.NotContains(t, failure, "MEMLOCK", "the memlock limit is no cause")
		})
	}
}
