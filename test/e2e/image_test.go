//go:build linux

package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // the otlp_grpc exporter compresses with gzip by default
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/otlpsink"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// imageEnv names the OCI archive that make image writes
// (dist/otelcol-netflowtcpend-image.tar); make test sets it when run as root.
const imageEnv = "NETFLOWTCPEND_IMAGE"

const (
	receiverType = "netflow_tcp_end"
	imageBinary  = "/otelcol-netflowtcpend"
	testNodeName = "netflowtcpend-e2e-node"
)

func imageArchive(t *testing.T) string {
	t.Helper()
	p := os.Getenv(imageEnv)
	if p == "" {
		if testenv.InCI() {
			t.Fatalf("%s is not set; run this through make test (as root), which builds the image", imageEnv)
		}
		t.Skipf("skipping: %s is not set (make test builds the image and sets it when run as root)", imageEnv)
	}
	return p
}

// requireTool returns the path of a program the test needs; it skips
// without it, except in CI, where it fails.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("%s is not installed (make test installs it as root); CI=true, so not skipping", name)
		}
		t.Skipf("skipping: %s is not installed", name)
	}
	return p
}

// ociImage is what the tests read of an OCI archive.
type ociImage struct {
	ref    string
	config struct {
		Created      string `json:"created"`
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			User       string            `json:"User"`
			Entrypoint []string          `json:"Entrypoint"`
			Cmd        []string          `json:"Cmd"`
			WorkingDir string            `json:"WorkingDir"`
			Labels     map[string]string `json:"Labels"`
		} `json:"config"`
	}
	layers [][]byte // uncompressed tars, bottom first
}

func readImage(t *testing.T, archive string) *ociImage {
	t.Helper()
	f, err := os.Open(archive)
	require.NoError(t, err)
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[path.Clean(strings.TrimPrefix(h.Name, "./"))] = b
	}
	blob := func(digest string) []byte {
		algo, hex, ok := strings.Cut(digest, ":")
		require.True(t, ok, "digest %q", digest)
		b, ok := files[path.Join("blobs", algo, hex)]
		require.True(t, ok, "blob %s not in the archive", digest)
		return b
	}
	type descriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Annotations map[string]string `json:"annotations"`
	}
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	require.NoError(t, json.Unmarshal(files["index.json"], &index), "index.json")
	require.Len(t, index.Manifests, 1)
	img := &ociImage{ref: index.Manifests[0].Annotations["org.opencontainers.image.ref.name"]}
	var manifest struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	require.NoError(t, json.Unmarshal(blob(index.Manifests[0].Digest), &manifest))
	require.NoError(t, json.Unmarshal(blob(manifest.Config.Digest), &img.config))
	for _, l := range manifest.Layers {
		b := blob(l.Digest)
		switch {
		case strings.HasSuffix(l.MediaType, "+gzip"):
			zr, err := gzip.NewReader(bytes.NewReader(b))
			require.NoError(t, err)
			b, err = io.ReadAll(zr)
			require.NoError(t, err)
		case strings.HasSuffix(l.MediaType, ".tar"):
		default:
			t.Fatalf("layer media type %s", l.MediaType)
		}
		img.layers = append(img.layers, b)
	}
	return img
}

// walkLayers calls f for each entry of the image's layers, bottom first.
func (img *ociImage) walkLayers(t *testing.T, f func(h *tar.Header, r io.Reader)) {
	t.Helper()
	for _, l := range img.layers {
		tr := tar.NewReader(bytes.NewReader(l))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			f(h, tr)
		}
	}
}

// Capability numbers (linux/capability.h).
const (
	capNetAdmin = 12
	capPerfmon  = 38
	capBPF      = 39
)

// fileCaps decodes a security.capability xattr (struct vfs_cap_data,
// revision 2): the permitted set and whether the effective bit is set.
func fileCaps(t *testing.T, v []byte) (permitted uint64, effective bool) {
	t.Helper()
	require.Len(t, v, 20, "security.capability of revision 2 (not 3: that is a namespaced one)")
	magic := binary.LittleEndian.Uint32(v[0:4])
	require.Equal(t, uint32(0x02000000), magic&0xff000000, "VFS_CAP_REVISION_2")
	permitted = uint64(binary.LittleEndian.Uint32(v[4:8])) | uint64(binary.LittleEndian.Uint32(v[12:16]))<<32
	inheritable := uint64(binary.LittleEndian.Uint32(v[8:12])) | uint64(binary.LittleEndian.Uint32(v[16:20]))<<32
	assert.Zero(t, inheritable, "inheritable file capabilities")
	return permitted, magic&1 == 1
}

func TestImageContents(t *testing.T) {
	img := readImage(t, imageArchive(t))
	c := img.config
	assert.Equal(t, "linux", c.OS)
	assert.Equal(t, "65534:65534", c.Config.User, "non-root by default")
	assert.Equal(t, []string{imageBinary}, c.Config.Entrypoint)
	assert.NotEmpty(t, img.ref, "no reference name in the archive's index")

	labels := c.Config.Labels
	for _, k := range []string{"title", "description", "version", "source", "licenses", "revision", "created"} {
		assert.NotEmpty(t, labels["org.opencontainers.image."+k], "label org.opencontainers.image.%s", k)
	}
	assert.Regexp(t, `^[0-9a-f]{40}(-dirty)?$`, labels["org.opencontainers.image.revision"])
	created, err := time.Parse(time.RFC3339, labels["org.opencontainers.image.created"])
	require.NoError(t, err)
	// Reproducible: the image is dated with the commit, like its label.
	imgCreated, err := time.Parse(time.RFC3339, c.Created)
	require.NoError(t, err)
	assert.True(t, created.Equal(imgCreated), "created label %s, image created %s", created, imgCreated)
	assert.True(t, strings.HasSuffix(img.ref, ":"+labels["org.opencontainers.image.version"]), "reference %s, version label %s",
		img.ref, labels["org.opencontainers.image.version"])

	var sawBinary, sawConfig bool
	img.walkLayers(t, func(h *tar.Header, r io.Reader) {
		assert.True(t, h.ModTime.Equal(imgCreated), "%s dated %s, not with the image", h.Name, h.ModTime)
		switch path.Clean("/" + h.Name) {
		case imageBinary:
			sawBinary = true
			assert.EqualValues(t, 0o755, h.Mode&0o7777)
			assert.Zero(t, h.Uid)
			xattr, ok := h.PAXRecords["SCHILY.xattr.security.capability"]
			require.True(t, ok, "the binary has no file capabilities in the layer")
			permitted, effective := fileCaps(t, []byte(xattr))
			assert.Equal(t, uint64(1<<capBPF|1<<capNetAdmin|1<<capPerfmon), permitted,
				"file capabilities: exactly cap_bpf, cap_net_admin, cap_perfmon")
			assert.True(t, effective, "file capabilities without the effective bit")
			b, err := io.ReadAll(r)
			require.NoError(t, err)
			ef, err := elf.NewFile(bytes.NewReader(b))
			require.NoError(t, err)
			for _, p := range ef.Progs {
				assert.NotEqual(t, elf.PT_INTERP, p.Type, "the binary is dynamically linked (has an interpreter)")
			}
			libs, _ := ef.ImportedLibraries()
			assert.Empty(t, libs, "the binary needs shared libraries")
		case "/etc/otelcol-netflowtcpend/config.yaml":
			sawConfig = true
		}
	})
	assert.True(t, sawBinary, "no %s in the image", imageBinary)
	assert.True(t, sawConfig, "no default configuration in the image")
	for _, a := range c.Config.Cmd {
		if f, ok := strings.CutPrefix(a, "--config="); ok {
			assert.Equal(t, "/etc/otelcol-netflowtcpend/config.yaml", f)
		}
	}
}

// daemonSetManifest reads deploy/daemonset.yaml (its strict checks are
// deploy's tests): the DaemonSet and the collector configuration.
func daemonSetManifest(t *testing.T) (*appsv1.DaemonSet, string) {
	t.Helper()
	b, err := os.ReadFile("../../deploy/daemonset.yaml")
	require.NoError(t, err)
	var ds *appsv1.DaemonSet
	var config string
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		var tm metav1.TypeMeta
		require.NoError(t, yaml.Unmarshal([]byte(doc), &tm))
		switch tm.Kind {
		case "DaemonSet":
			ds = &appsv1.DaemonSet{}
			require.NoError(t, yaml.Unmarshal([]byte(doc), ds))
		case "ConfigMap":
			var cm corev1.ConfigMap
			require.NoError(t, yaml.Unmarshal([]byte(doc), &cm))
			config = cm.Data["config.yaml"]
		}
	}
	require.NotNil(t, ds)
	require.NotEmpty(t, config)
	return ds, config
}

// componentsOf parses the output of `otelcol-netflowtcpend components`.
type components struct {
	Receivers  []struct{ Name string } `json:"receivers"`
	Processors []struct{ Name string } `json:"processors"`
	Exporters  []struct{ Name string } `json:"exporters"`
	Extensions []struct{ Name string } `json:"extensions"`
}

func names(list []struct{ Name string }) []string {
	var out []string
	for _, c := range list {
		out = append(out, c.Name)
	}
	return out
}

// checkComponents checks the distribution's components.
func checkComponents(t *testing.T, out []byte) {
	t.Helper()
	var c components
	require.NoError(t, yaml.Unmarshal(out, &c), "components output:\n%s", out)
	assert.Subset(t, names(c.Receivers), []string{"otlp"})
	assert.Subset(t, names(c.Processors), []string{"batch", "memory_limiter", "resource"})
	assert.Subset(t, names(c.Exporters), []string{"debug", "otlp_grpc", "otlp_http", "file"})
	assert.Subset(t, names(c.Extensions), []string{"health_check"})
	assert.Contains(t, names(c.Receivers), receiverType)
}

// otlpGRPCSink is a gateway: an OTLP/gRPC logs endpoint that keeps records
// with their resources.
type otlpGRPCSink struct {
	plogotlp.UnimplementedGRPCServer
	mu      sync.Mutex
	records []sinkRecord
	addr    string
}

type sinkRecord struct {
	resource pcommon.Resource
	record   plog.LogRecord
}

func (s *otlpGRPCSink) Export(_ context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	otlpsink.ForEach(req.Logs(), func(res pcommon.Resource, lr plog.LogRecord) {
		s.records = append(s.records, sinkRecord{res, lr})
	})
	return plogotlp.NewExportResponse(), nil
}

func (s *otlpGRPCSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.records)
}

// lockedBuffer is a bytes.Buffer for one writer and other readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (s *otlpGRPCSink) byCookie(cookie uint64) []sinkRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sinkRecord
	for _, r := range s.records {
		if v, ok := r.record.Attributes().Get("netflow.socket.cookie"); ok && uint64(v.Int()) == cookie {
			out = append(out, r)
		}
	}
	return out
}

func newOTLPGRPCSink(t *testing.T) *otlpGRPCSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &otlpGRPCSink{addr: ln.Addr().String()}
	srv := grpc.NewServer()
	plogotlp.RegisterGRPCServer(srv, s)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return s
}

// agentEnv is the DaemonSet container's environment as the kubelet would
// set it on a node named testNodeName, with the gateway at the test's sink.
func agentEnv(t *testing.T, c corev1.Container, gateway string) []string {
	t.Helper()
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			require.NotNil(t, e.ValueFrom.FieldRef, "env %s", e.Name)
			switch e.ValueFrom.FieldRef.FieldPath {
			case "spec.nodeName":
				v = testNodeName
			case "status.podIP":
				v = "127.0.0.1" // the container shares the test's network namespace
			default:
				t.Fatalf("env %s from %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		}
		if e.Name == "GATEWAY_ENDPOINT" {
			v = gateway
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

// checkAgent starts the agent with start (which returns the running
// container's command, its log on stderr or stdout), makes connections,
// and checks that their records reach the gateway with the node's name.
func checkAgent(t *testing.T, sink *otlpGRPCSink, start func() (*exec.Cmd, io.Reader), pid func() int) {
	t.Helper()
	cmd, log := start()
	var logged lockedBuffer
	waitForLine(t, io.TeeReader(log, &logged), "Everything is ready")
	defer func() {
		if t.Failed() {
			t.Logf("the gateway received %d records; the container's log:\n%s", sink.count(), logged.String())
		}
	}()

	checkCredentials(t, pid())

	// The probes' endpoint (health_check on POD_IP:13133).
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://127.0.0.1:13133/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 100*time.Millisecond, "health_check does not answer")

	type socket struct {
		cookie uint64
		dir    string
	}
	var sockets []socket
	for range 2 {
		l, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
		require.NoError(t, err)
		client, err := testnet.Dial(testnet.AddrPort(l.Addr()))
		require.NoError(t, err)
		server, err := l.AcceptTCP()
		require.NoError(t, err)
		l.Close()
		for _, s := range []struct {
			c   *net.TCPConn
			dir string
		}{{client, "outgoing"}, {server, "incoming"}} {
			cookie, err := testnet.Cookie(s.c)
			require.NoError(t, err)
			sockets = append(sockets, socket{cookie, s.dir})
		}
		_, err = client.Write([]byte("ping"))
		require.NoError(t, err)
		require.NoError(t, client.Close())
		_, err = io.Copy(io.Discard, server)
		require.NoError(t, err)
		require.NoError(t, server.Close())
	}
	for _, s := range sockets {
		var records []sinkRecord
		require.Eventually(t, func() bool {
			records = sink.byCookie(s.cookie)
			return len(records) > 0
		}, 30*time.Second, 100*time.Millisecond, "no record for socket %d", s.cookie)
		require.Len(t, records, 1)
		r := records[0]
		assert.Equal(t, "netflow.tcp.end", r.record.EventName())
		dir, _ := r.record.Attributes().Get("netflow.direction")
		assert.Equal(t, s.dir, dir.Str())
		for _, k := range []string{"host.name", "k8s.node.name"} {
			v, ok := r.resource.Attributes().Get(k)
			assert.True(t, ok && v.Str() == testNodeName, "resource %s = %q, want the node's name %q", k, v.AsString(), testNodeName)
		}
	}

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Logf("the container stopped after SIGTERM: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the container did not stop after SIGTERM")
	}
}

// checkCredentials checks that the collector runs as the image's user,
// under no_new_privs, with exactly the three capabilities effective, none
// ambient (as Kubernetes gives them).
func checkCredentials(t *testing.T, pid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	status := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			status[k] = strings.TrimSpace(v)
		}
	}
	assert.Equal(t, "65534\t65534\t65534\t65534", status["Uid"], "uids")
	assert.Equal(t, "1", status["NoNewPrivs"], "no_new_privs")
	want := fmt.Sprintf("%016x", uint64(1<<capBPF|1<<capNetAdmin|1<<capPerfmon))
	assert.Equal(t, want, status["CapEff"], "effective capabilities")
	assert.Equal(t, want, status["CapPrm"], "permitted capabilities")
	assert.Equal(t, want, status["CapBnd"], "bounding set")
	t.Logf("collector (pid %d): Uid %s, NoNewPrivs %s, CapEff %s, CapAmb %s", pid, status["Uid"], status["NoNewPrivs"], status["CapEff"], status["CapAmb"])
}

// runFlags run the image as deploy/daemonset.yaml does: user 65534, only
// the three capabilities, no_new_privs, read-only root. podman's default
// rlimits (RLIMIT_NOFILE 1048576) exceed the hard limit of a process
// without CAP_SYS_RESOURCE, as in some sandboxes; these fit anywhere.
var runFlags = []string{"--rm", "--user", "65534:65534", "--cap-drop", "all", "--cap-add", "BPF,NET_ADMIN,PERFMON",
	"--security-opt", "no-new-privileges", "--read-only", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}

func TestImageWithPodman(t *testing.T) {
	archive := imageArchive(t)
	testenv.RequireRoot(t)
	p := newPodman(t)
	ref := readImage(t, archive).ref
	onInterrupt(t, func() error { _ = p.cmd("rmi", "--all", "--force").Run(); return nil })

	out, err := p.cmd("load", "-i", archive).CombinedOutput()
	require.NoError(t, err, "podman load:\n%s", out)
	require.Contains(t, string(out), ref)

	out, err = p.run("--network", "none", ref, "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "otelcol-netflowtcpend version")

	out, err = p.run("--network", "none", ref, "components").Output()
	require.NoError(t, err, "%s", out)
	checkComponents(t, out)

	// The DaemonSet's configuration, under a seccomp profile like the
	// RuntimeDefault of current runtimes.
	ds, config := daemonSetManifest(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o644))
	profile := filepath.Join(dir, "seccomp.json")
	require.NoError(t, os.WriteFile(profile, seccompProfile(t), 0o644))
	sink := newOTLPGRPCSink(t)
	name := fmt.Sprintf("netflowtcpend-e2e-%d", os.Getpid())
	onInterrupt(t, func() error { _ = p.cmd("rm", "--force", name).Run(); return nil })
	checkAgent(t, sink, func() (*exec.Cmd, io.Reader) {
		args := []string{"--name", name, "--pid", "host", "--network", "host",
			"--security-opt", "seccomp=" + profile,
			// The DaemonSet's hostPath: the host's hierarchy (with, on a
			// hybrid host, cgroup v2 at unified/ below it) over the
			// container's own.
			"-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
			"-v", filepath.Join(dir, "config.yaml") + ":/conf/config.yaml:ro"}
		for _, e := range agentEnv(t, ds.Spec.Template.Spec.Containers[0], sink.addr)[1:] {
			args = append(args, "--env", e)
		}
		args = append(args, ref, "--config=/conf/config.yaml")
		cmd := p.run(args...)
		stderr, err := cmd.StderrPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, stderr
	}, func() int {
		out, err := p.cmd("inspect", "--format", "{{.State.Pid}}", name).Output()
		require.NoError(t, err)
		var pid int
		_, err = fmt.Sscan(string(out), &pid)
		require.NoError(t, err)
		return pid
	})
}

// seccompProfile returns the host's containers-common seccomp profile, with
// bpf allowed under CAP_BPF and perf_event_open under CAP_PERFMON if it does
// not allow them yet: the rules containers/common added in June 2024 and
// containerd's RuntimeDefault has since 1.7. Older profiles allow them only
// with CAP_SYS_ADMIN.
func seccompProfile(t *testing.T) []byte {
	t.Helper()
	const path = "/usr/share/containers/seccomp.json"
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var profile map[string]any
	require.NoError(t, json.Unmarshal(b, &profile))
	syscalls, _ := profile["syscalls"].([]any)
	capsOf := func(rule map[string]any, key string) []string {
		m, _ := rule[key].(map[string]any)
		list, _ := m["caps"].([]any)
		var out []string
		for _, c := range list {
			s, _ := c.(string)
			out = append(out, s)
		}
		return out
	}
	hasName := func(rule map[string]any, name string) bool {
		list, _ := rule["names"].([]any)
		return slices.Contains(list, any(name))
	}
	wants := map[string]string{"bpf": "CAP_BPF", "perf_event_open": "CAP_PERFMON"}
	for _, r := range syscalls {
		rule, _ := r.(map[string]any)
		for name, cap := range wants {
			if hasName(rule, name) && rule["action"] == "SCMP_ACT_ALLOW" && slices.Contains(capsOf(rule, "includes"), cap) {
				delete(wants, name)
			}
		}
	}
	if len(wants) == 0 {
		return b
	}
	t.Logf("%s allows %v only with CAP_SYS_ADMIN; adding the rules of current profiles", path, wants)
	for i, r := range syscalls {
		rule, _ := r.(map[string]any)
		if rule["action"] != "SCMP_ACT_ERRNO" {
			continue
		}
		list, _ := rule["names"].([]any)
		syscalls[i].(map[string]any)["names"] = slices.DeleteFunc(slices.Clone(list), func(n any) bool {
			_, ok := wants[n.(string)]
			return ok
		})
	}
	for name, cap := range wants {
		syscalls = append(syscalls,
			map[string]any{"names": []string{name}, "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
				"excludes": map[string]any{"caps": []string{"CAP_SYS_ADMIN", cap}}},
			map[string]any{"names": []string{name}, "action": "SCMP_ACT_ALLOW",
				"includes": map[string]any{"caps": []string{cap}}})
	}
	profile["syscalls"] = syscalls
	out, err := json.Marshal(profile)
	require.NoError(t, err)
	return out
}

// TestImageUnderKubernetesSecurityContext runs the image with runc (the
// runtime under containerd) from an OCI runtime spec made the way
// containerd's CRI makes it from deploy/daemonset.yaml: the user, the
// capabilities in the bounding, permitted and effective sets (never the
// ambient set), no_new_privs from allowPrivilegeEscalation: false, a
// read-only root, the host PID namespace, the host paths in place of the
// runtime's own mounts at the same place, the ConfigMap at its mount path
// and the kubelet's /etc/hosts. The container shares the test's network
// namespace (a pod would have its own) so that it reaches the test's
// gateway on 127.0.0.1, and has no seccomp filter (TestImageWithPodman
// has one).
func TestImageUnderKubernetesSecurityContext(t *testing.T) {
	archive := imageArchive(t)
	testenv.RequireRoot(t)
	runc := requireTool(t, "runc")
	img := readImage(t, archive)
	ds, config := daemonSetManifest(t)
	pod := ds.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	require.True(t, pod.HostPID)

	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	unpack(t, img, rootfs)
	out, err := exec.Command(filepath.Join(rootfs, imageBinary), "components").Output()
	require.NoError(t, err)
	checkComponents(t, out)

	out, err = exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput()
	require.NoError(t, err, "runc spec: %s", out)
	specFile := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(specFile)
	require.NoError(t, err)
	var spec map[string]any
	require.NoError(t, json.Unmarshal(b, &spec))

	sc := c.SecurityContext
	psc := pod.SecurityContext
	uid, gid := psc.RunAsUser, psc.RunAsGroup
	if sc.RunAsUser != nil {
		uid = sc.RunAsUser
	}
	if sc.RunAsGroup != nil {
		gid = sc.RunAsGroup
	}
	require.NotNil(t, uid)
	require.NotNil(t, gid)
	require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	var caps []string
	for _, c := range sc.Capabilities.Add {
		caps = append(caps, "CAP_"+string(c))
	}
	process := spec["process"].(map[string]any)
	process["terminal"] = false
	process["user"] = map[string]any{"uid": *uid, "gid": *gid}
	process["capabilities"] = map[string]any{"bounding": caps, "effective": caps, "permitted": caps}
	process["noNewPrivileges"] = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	process["rlimits"] = []any{}
	process["cwd"] = "/"
	args := img.config.Config.Entrypoint
	if len(c.Command) > 0 {
		args = c.Command
	}
	process["args"] = slices.Concat(args, c.Args)
	sink := newOTLPGRPCSink(t)
	process["env"] = agentEnv(t, c, sink.addr)
	spec["root"] = map[string]any{"path": rootfs, "readonly": sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem}
	spec["hostname"] = "netflow-tcp-end-e2e"

	// Mounts: the runtime's defaults, less those a volume replaces.
	hosts := filepath.Join(bundle, "hosts")
	require.NoError(t, os.WriteFile(hosts, []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o644))
	configDir := filepath.Join(bundle, "conf")
	require.NoError(t, os.Mkdir(configDir, 0o755))
	extra := []map[string]any{{"destination": "/etc/hosts", "type": "bind", "source": hosts, "options": []string{"rbind", "ro"}}}
	for _, vm := range c.VolumeMounts {
		i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		require.GreaterOrEqual(t, i, 0)
		v := pod.Volumes[i]
		var source string
		switch {
		case v.HostPath != nil:
			source = v.HostPath.Path
		case v.ConfigMap != nil:
			for _, a := range c.Args {
				if f, ok := strings.CutPrefix(a, "--config="); ok && path.Dir(f) == path.Clean(vm.MountPath) {
					require.NoError(t, os.WriteFile(filepath.Join(configDir, path.Base(f)), []byte(config), 0o644))
				}
			}
			source = configDir
		default:
			t.Fatalf("volume %s: only hostPath and configMap volumes are emulated", v.Name)
		}
		opts := []string{"rbind"}
		if vm.ReadOnly || v.ConfigMap != nil {
			opts = append(opts, "ro")
		}
		extra = append(extra, map[string]any{"destination": vm.MountPath, "type": "bind", "source": source, "options": opts})
	}
	var mounts []any
	for _, m := range spec["mounts"].([]any) {
		dest := m.(map[string]any)["destination"].(string)
		if !slices.ContainsFunc(extra, func(e map[string]any) bool { return path.Clean(e["destination"].(string)) == path.Clean(dest) }) {
			mounts = append(mounts, m)
		}
	}
	for _, e := range extra {
		mounts = append(mounts, e)
	}
	spec["mounts"] = mounts

	linux := spec["linux"].(map[string]any)
	var namespaces []any
	for _, ns := range linux["namespaces"].([]any) {
		switch ns.(map[string]any)["type"] {
		case "pid": // hostPID
		case "network": // see above
		default:
			namespaces = append(namespaces, ns)
		}
	}
	linux["namespaces"] = namespaces
	delete(linux, "resources") // the pod's limits are not the test's subject
	// The container's cgroup, at the top of each hierarchy: runc removes it
	// when it deletes the container, and the test if runc cannot.
	cgroup := fmt.Sprintf("netflowtcpend-runc-%d", os.Getpid())
	linux["cgroupsPath"] = "/" + cgroup
	onInterrupt(t, func() error { return removeCgroups(cgroup) })
	b, err = json.MarshalIndent(spec, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(specFile, b, 0o644))

	state := t.TempDir()
	id := fmt.Sprintf("netflowtcpend-e2e-%d", os.Getpid())
	onInterrupt(t, func() error { _ = exec.Command(runc, "--root", state, "delete", "--force", id).Run(); return nil })
	checkAgent(t, sink, func() (*exec.Cmd, io.Reader) {
		cmd := exec.Command(runc, "--root", state, "run", "--bundle", bundle, id)
		stderr, err := cmd.StderrPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, stderr
	}, func() int {
		out, err := exec.Command(runc, "--root", state, "state", id).Output()
		require.NoError(t, err)
		var st struct {
			Pid int `json:"pid"`
		}
		require.NoError(t, json.Unmarshal(out, &st))
		return st.Pid
	})
}

// unpack extracts the image's layers into dir with their modes, owners and
// extended attributes (the binary's file capabilities among them).
func unpack(t *testing.T, img *ociImage, dir string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	img.walkLayers(t, func(h *tar.Header, r io.Reader) {
		name := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			require.NoError(t, os.MkdirAll(name, os.FileMode(h.Mode&0o7777)))
		case tar.TypeReg:
			require.NoError(t, os.MkdirAll(filepath.Dir(name), 0o755))
			f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode&0o7777))
			require.NoError(t, err)
			_, err = io.Copy(f, r)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		case tar.TypeSymlink:
			require.NoError(t, os.Symlink(h.Linkname, name))
		default:
			t.Fatalf("%s: tar entry type %c not handled", h.Name, h.Typeflag)
		}
		require.NoError(t, os.Lchown(name, h.Uid, h.Gid))
		if h.Typeflag != tar.TypeSymlink {
			require.NoError(t, os.Chmod(name, os.FileMode(h.Mode&0o7777)))
		}
		for k, v := range h.PAXRecords {
			if attr, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				require.NoError(t, unix.Lsetxattr(name, attr, []byte(v), 0), "xattr %s of %s", attr, h.Name)
			}
		}
	})
	// Mount points the runtime needs in a read-only root.
	for _, d := range []string{"proc", "sys", "dev", "conf", "tmp"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "etc", "hosts"), nil, 0o644))
}

// waitForLine reads the collector's log until a line contains want, then
// keeps draining it in the background so that the collector never blocks.
func waitForLine(t *testing.T, r io.Reader, want string) {
	t.Helper()
	found := make(chan struct{})
	var seen strings.Builder
	var mu sync.Mutex
	go func() {
		s := bufio.NewScanner(r)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for s.Scan() {
			mu.Lock()
			seen.WriteString(s.Text() + "\n")
			mu.Unlock()
			if strings.Contains(s.Text(), want) {
				once.Do(func() { close(found) })
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case <-found:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("collector never logged %q; its log:\n%s", want, seen.String())
	}
}
