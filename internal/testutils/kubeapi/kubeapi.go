//go:build linux

// Package kubeapi runs a real Kubernetes API server and etcd for tests: a
// fresh cluster per test run (Start, or Shared once per test binary), with
// client-certificate authentication, RBAC and a service-account key, and
// nothing else (no controller manager, scheduler or kubelet: tests make
// the objects, and set pods' addresses through the status subresource).
//
// The binaries come from make k8s-tools (scripts/build-k8s.sh), in
// .tools/k8s of the repository or the directory NETFLOWTCPEND_K8S_DIR
// names. The API server listens on 127.0.0.1 only; the address it
// advertises (which it must have, and which must not be a loopback one)
// exists only in a network namespace made for it, so no test traffic
// leaves the host's loopback.
package kubeapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// ServiceCIDR is the cluster's Service address range: Services the tests
// make get their cluster IPs from it.
var ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")

// advertiseAddr is the API server's advertised address, on lo in a network
// namespace of its own.
var advertiseAddr = netip.MustParseAddr("10.254.0.1")

// Cluster is an etcd and a kube-apiserver, each a process of this test
// binary, with their files in a temporary directory.
type Cluster struct {
	// URL is the API server's address, https://127.0.0.1:PORT.
	URL string
	// Admin is a client of the system:masters group.
	Admin kubernetes.Interface
	// AdminConfig is Admin's configuration.
	AdminConfig *rest.Config

	dir       string
	ca        *authority
	netns     *testnet.Netns
	etcd      *process
	apiserver *process
	apiArgs   []string
	apiBin    string
}

// Binaries returns the paths of kube-apiserver and etcd, or an error that
// says how to build them.
func Binaries() (apiserver, etcd string, err error) {
	dir := os.Getenv("NETFLOWTCPEND_K8S_DIR")
	if dir == "" {
		dir, err = toolsDir()
		if err != nil {
			return "", "", err
		}
	}
	apiserver, etcd = filepath.Join(dir, "kube-apiserver"), filepath.Join(dir, "etcd")
	for _, p := range []string{apiserver, etcd} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("%s is not built: run make k8s-tools (about 6 minutes, once)", p)
		}
	}
	return apiserver, etcd, nil
}

// toolsDir finds .tools/k8s in the repository: the directory above the
// working directory whose go.mod has no replace of the root module (the
// root module's own).
func toolsDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "bpf")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				return filepath.Join(d, ".tools", "k8s"), nil
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no repository root above %s; set NETFLOWTCPEND_K8S_DIR", wd)
		}
	}
}

// Require skips the test when the cluster cannot run here: not root (the
// advertised address needs a network namespace) or the binaries not built.
// Under CI=true both are failures. With -short it skips: make unit is the
// quick loop.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping under -short: this test runs a Kubernetes API server (make test runs it)")
	}
	if os.Geteuid() != 0 {
		if testenv.InCI() {
			t.Fatal("this test runs a Kubernetes API server in network namespaces of its own and needs root; CI=true, so not skipping")
		}
		t.Skip("skipping: needs root for the API server's network namespace (run make test as root)")
	}
	if _, _, err := Binaries(); err != nil {
		if testenv.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

var shared struct {
	sync.Mutex
	cluster *Cluster
	err     error
}

// Shared returns the test binary's cluster, started by the first test that
// asks (tests share it, so each uses namespaces and names of its own).
// CloseShared, from TestMain, stops it.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	Require(t)
	shared.Lock()
	defer shared.Unlock()
	if shared.cluster == nil && shared.err == nil {
		shared.cluster, shared.err = Start()
	}
	if shared.err != nil {
		t.Fatalf("start the Kubernetes API server: %v", shared.err)
	}
	return shared.cluster
}

// CloseShared stops the shared cluster, if any test started it.
func CloseShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.cluster != nil {
		shared.cluster.Close()
		shared.cluster = nil
	}
}

// Start starts a fresh etcd and API server and waits until the API server
// is ready (about 15 s). Close stops them and removes their files.
func Start() (c *Cluster, err error) {
	apiBin, etcdBin, err := Binaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "netflowtcpend-kubeapi-")
	if err != nil {
		return nil, err
	}
	c = &Cluster{dir: dir, apiBin: apiBin}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	if c.netns, err = testnet.OpenNetns(); err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	if err := c.netns.Do(func() error {
		return testnet.AddrAdd("lo", netip.PrefixFrom(advertiseAddr, 32))
	}); err != nil {
		return nil, fmt.Errorf("advertised address: %w", err)
	}

	if c.ca, err = newAuthority(); err != nil {
		return nil, err
	}
	serverCert, serverKey, err := c.ca.issue("kube-apiserver", nil, []net.IP{net.IPv4(127, 0, 0, 1), advertiseAddr.AsSlice()})
	if err != nil {
		return nil, err
	}
	saKey, saPub, err := serviceAccountKey()
	if err != nil {
		return nil, err
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	if err := writeFiles(map[string][]byte{
		path("ca.crt"): c.ca.certPEM, path("server.crt"): serverCert, path("server.key"): serverKey,
		path("sa.key"): saKey, path("sa.pub"): saPub,
	}); err != nil {
		return nil, err
	}

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	c.etcd, err = startProcess(path("etcd.log"), etcdBin,
		"--name=test", "--data-dir="+path("etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL,
		"--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return nil, err
	}
	if err := waitFor(30*time.Second, c.etcd, func() error { return httpOK(etcdURL + "/health") }); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}

	c.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	c.apiArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[2]),
		"--advertise-address=" + advertiseAddr.String(),
		"--tls-cert-file=" + path("server.crt"), "--tls-private-key-file=" + path("server.key"),
		"--client-ca-file=" + path("ca.crt"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + path("sa.pub"),
		"--service-account-signing-key-file=" + path("sa.key"),
		"--service-cluster-ip-range=" + ServiceCIDR.String(),
		// No controller manager: nothing keeps the kubernetes Service's
		// endpoints or makes namespaces' default ServiceAccount.
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=false",
	}
	c.AdminConfig, err = c.UserConfig("netflowtcpend-test-admin", "system:masters")
	if err != nil {
		return nil, err
	}
	if c.Admin, err = kubernetes.NewForConfig(c.AdminConfig); err != nil {
		return nil, err
	}
	if err := c.StartAPIServer(); err != nil {
		return nil, err
	}
	return c, nil
}

// StartAPIServer starts the API server (again, after StopAPIServer: same
// port, same etcd) and waits until it is ready.
func (c *Cluster) StartAPIServer() error {
	if c.apiserver != nil && c.apiserver.running() {
		return errors.New("the API server runs already")
	}
	var err error
	c.apiserver, err = startProcess(filepath.Join(c.dir, "kube-apiserver.log"), c.apiBin, c.apiArgs...)
	if err != nil {
		return err
	}
	if err := waitFor(90*time.Second, c.apiserver, c.ready); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

// InformersBack bounds how long every informer of a collector takes to
// watch again once the API server is back (StartAPIServer returned): each
// retries on its own, with client-go's reflector backoff, whose steps stop
// at 30 s plus a jitter of up to as much again ([30, 60) s), and which
// resets only after 2 minutes without a failure, so a second outage starts
// where the first left off. One resource's names can be back while
// another's informer still waits.
const InformersBack = 65 * time.Second

// StopAPIServer stops the API server, as an outage would; etcd keeps the
// cluster's objects.
func (c *Cluster) StopAPIServer() {
	if c.apiserver != nil {
		c.apiserver.stop()
	}
}

// APIServerPID is the API server process's id (0 when stopped), to measure
// what it costs.
func (c *Cluster) APIServerPID() int {
	if c.apiserver == nil || !c.apiserver.running() {
		return 0
	}
	return c.apiserver.cmd.Process.Pid
}

func (c *Cluster) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, err := c.Admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(body))
	}
	return nil
}

// UserConfig returns a client configuration that authenticates as user,
// member of groups, with a client certificate the cluster's CA signed.
func (c *Cluster) UserConfig(user string, groups ...string) (*rest.Config, error) {
	cert, key, err := c.ca.issue(user, groups, nil)
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: c.ca.certPEM, CertData: cert, KeyData: key,
		},
		QPS: 200, Burst: 400,
	}, nil
}

// WriteKubeconfig writes a kubeconfig file for cfg (from UserConfig) to
// path, with one context, "test", as its current context.
func (c *Cluster) WriteKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	return clientcmd.WriteToFile(*kc, path)
}

// CAPEM is the cluster's CA certificate, which the API server's serving
// certificate chains to.
func (c *Cluster) CAPEM() []byte { return c.ca.certPEM }

// Close stops the API server and etcd and removes their files and the
// network namespace.
func (c *Cluster) Close() {
	if c.apiserver != nil {
		c.apiserver.stop()
	}
	if c.etcd != nil {
		c.etcd.stop()
	}
	if c.netns != nil {
		c.netns.Close()
	}
	os.RemoveAll(c.dir)
}

// process is a server this package started.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// spawner starts every process from one OS thread that never exits: a
// child's parent-death signal fires when the thread that forked it exits,
// and tests end threads on purpose (those left in other network
// namespaces).
var spawner = func() chan func() {
	ch := make(chan func())
	go spawn(ch)
	return ch
}()

func spawn(ch chan func()) {
	runtime.LockOSThread()
	for f := range ch {
		f()
	}
}

// RunTests runs a package's tests (from TestMain), stops the shared
// cluster and, if they passed, fails them when a goroutine outlives them
// (goleak), but this package's spawner. It returns the exit code.
func RunTests(m *testing.M) int {
	code := m.Run()
	CloseShared()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/netflowtcpend/netflowtcpend/internal/testutils/kubeapi.spawn")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	return code
}

func startProcess(logPath, bin string, args ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Killed with this test binary, whatever way it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	errc := make(chan error)
	spawner <- func() { errc <- cmd.Start() }
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop ends the process: SIGTERM, then SIGKILL after 10 s.
func (p *process) stop() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail is the end of the process's log, for errors.
func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitFor polls check until it succeeds, the process exits or timeout
// passes; the error then carries the end of the process's log.
func waitFor(timeout time.Duration, p *process, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("exited (%w); its log ends:\n%s", p.err, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w; its log ends:\n%s", timeout, err, p.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func httpOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// freePorts returns n ports of 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
