//go:build linux

package receiver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/netflowtcpend/netflowtcpend/internal/kubecache"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/kubeapi"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// These tests run the receiver with a kubernetes: block against a real API
// server and etcd (internal/testutils/kubeapi): real informers over real
// watches, as a collector with exactly the ClusterRole of deploy/ sees the
// cluster. The "pods" are two network namespaces joined by a veth pair,
// whose addresses the cluster's pods have: a client pod in A
// (10.77.0.1), a server pod in B (10.77.0.2). B also holds the node's
// address (10.77.0.3, which a host-network pod claims too), a Service's
// cluster IP (on its lo, routed to from A) and an address that nothing in
// the cluster has (10.77.0.4).

var (
	k8sClientIP  = netip.MustParseAddr("10.77.0.1")
	k8sServerIP  = netip.MustParseAddr("10.77.0.2")
	k8sNodeBIP   = netip.MustParseAddr("10.77.0.3")
	k8sUnknownIP = netip.MustParseAddr("10.77.0.4")
	k8sClusterIP = netip.MustParseAddr("10.96.77.10")
)

// k8sPeerRecord is what these tests compare of a record: its socket and
// its netflow.peer.k8s.* attributes (key to value; absent keys absent).
type k8sPeerRecord struct {
	cookie uint64
	peer   string
	names  map[string]string
}

var k8sSeq atomic.Int64

// k8sWorld is the network and cluster of these tests.
type k8sWorld struct {
	a, b       *testnet.Netns
	cluster    *kubeapi.Cluster
	objects    kubeapi.Objects
	ns         string
	kubeconfig string
}

func newK8sWorld(t *testing.T, cluster *kubeapi.Cluster) *k8sWorld {
	t.Helper()
	w := &k8sWorld{cluster: cluster, objects: kubeapi.Objects{Client: cluster.Admin}}
	w.a, w.b = testnet.NewVethPair(t)
	require.NoError(t, w.b.Do(func() error {
		for _, ip := range []netip.Addr{k8sNodeBIP, k8sUnknownIP} {
			if err := testnet.AddrAdd("nft1", netip.PrefixFrom(ip, 24)); err != nil {
				return err
			}
		}
		return nil
	}))
	w.b.AddLoopbackAddr(t, k8sClusterIP)
	require.NoError(t, w.a.Do(func() error {
		return testnet.RouteAdd("nft0", kubeapi.ServiceCIDR, k8sServerIP)
	}))

	// The collector's identity: exactly the deploy manifest's rights, in a
	// kubeconfig that KUBECONFIG names (auth_type kubeConfig).
	role, err := kubeapi.ClusterRoleFromManifest("../deploy/daemonset.yaml")
	require.NoError(t, err)
	user := fmt.Sprintf("receiver-collector-%d", k8sSeq.Add(1))
	ctx := context.Background()
	require.NoError(t, w.objects.Grant(ctx, user, role))
	cfg, err := cluster.UserConfig(user)
	require.NoError(t, err)
	w.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, cluster.WriteKubeconfig(w.kubeconfig, cfg))
	t.Setenv("KUBECONFIG", w.kubeconfig)

	w.ns = fmt.Sprintf("peers-%d", k8sSeq.Add(1))
	require.NoError(t, w.objects.Namespace(ctx, w.ns))
	return w
}

// startReceiver starts a receiver with the kubernetes: block (auth_type
// kubeConfig) on h, logging to an observer.
func (w *k8sWorld) startReceiver(t *testing.T, h *harness) *observer.ObservedLogs {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	h.logger = zap.New(core)
	cfg := Config{RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond}
	cfg.Kubernetes = configoptional.Some(KubernetesConfig{AuthType: kubecache.AuthKubeConfig})
	h.startWith(cfg)
	require.NotNil(t, h.rcv.k8s, "kubernetes names off: %v", logs.All())
	require.Eventually(t, h.rcv.k8s.Synced, 30*time.Second, 50*time.Millisecond, "informers not synced")
	return logs
}

// connect makes one connection from A to server:port, where a listener in
// B accepts; both sockets are in h's cgroup. Both ends close it. It
// returns the client's and the server's socket cookies.
func (w *k8sWorld) connect(t *testing.T, h *harness, server netip.Addr) (client, accepted uint64) {
	t.Helper()
	var ln *net.TCPListener
	h.cg.Run(t, func() {
		require.NoError(t, w.b.Do(func() (err error) {
			ln, err = testnet.Listen(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
			return err
		}))
	})
	defer ln.Close()
	var c *net.TCPConn
	h.cg.Run(t, func() {
		require.NoError(t, w.a.Do(func() (err error) {
			c, err = testnet.Dial(netip.AddrPortFrom(server, testnet.AddrPort(ln.Addr()).Port()))
			return err
		}))
	})
	s, err := ln.AcceptTCP()
	require.NoError(t, err)
	client, err = testnet.Cookie(c)
	require.NoError(t, err)
	accepted, err = testnet.Cookie(s)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, s.Close())
	return client, accepted
}

// k8sRecords returns the records the receiver passed on so far, by socket
// cookie.
func k8sRecords(h *harness) map[uint64]k8sPeerRecord {
	out := map[uint64]k8sPeerRecord{}
	h.eachRecord(func(_ pcommon.Resource, lr plog.LogRecord) {
		a := lr.Attributes()
		v, _ := a.Get(attrSocketCookie.String())
		peer, _ := a.Get(attrPeerAddress.String())
		r := k8sPeerRecord{cookie: uint64(v.Int()), peer: peer.AsString(), names: map[string]string{}}
		for _, key := range []string{AttrPeerK8sNamespace, AttrPeerK8sPod, AttrPeerK8sWorkloadKind,
			AttrPeerK8sWorkloadName, AttrPeerK8sNode, AttrPeerK8sService} {
			if v, ok := a.Get(key); ok {
				r.names[key] = v.Str()
			}
		}
		out[r.cookie] = r
	})
	return out
}

// waitRecord waits for the record of the socket with cookie.
func waitRecord(t *testing.T, h *harness, cookie uint64) k8sPeerRecord {
	t.Helper()
	var r k8sPeerRecord
	require.Eventually(t, func() bool {
		var ok bool
		r, ok = k8sRecords(h)[cookie]
		return ok
	}, 5*time.Second, 10*time.Millisecond, "no record of socket %d", cookie)
	return r
}

func podNames(ns, pod, kind, workload, node string) map[string]string {
	return map[string]string{
		AttrPeerK8sNamespace: ns, AttrPeerK8sPod: pod,
		AttrPeerK8sWorkloadKind: kind, AttrPeerK8sWorkloadName: workload, AttrPeerK8sNode: node,
	}
}

// Records between pods name both ends' pod, namespace, workload and node;
// a record to a cluster IP names the Service; a node's address names the
// node only, though a host-network pod has it too; an address the cluster
// does not know gets no netflow.peer.k8s.* attribute; a pod replaced by
// another with its address is named anew within seconds.
func TestK8sPeerNames(t *testing.T) {
	cluster := kubeapi.Shared(t)
	h := newHarness(t)
	w := newK8sWorld(t, cluster)
	ctx := context.Background()
	o, ns := w.objects, w.ns

	require.NoError(t, o.Node(ctx, "node-a", netip.MustParseAddr("10.77.9.1")))
	require.NoError(t, o.Node(ctx, "node-b", k8sNodeBIP))
	clients, err := o.Workload(ctx, ns, "StatefulSet", "clients")
	require.NoError(t, err)
	web, err := o.Workload(ctx, ns, "Deployment", "web")
	require.NoError(t, err)
	_, err = o.Pod(ctx, kubeapi.Pod{Namespace: ns, Name: "clients-0", Node: "node-a", IPs: []netip.Addr{k8sClientIP}, Owner: clients})
	require.NoError(t, err)
	_, err = o.Pod(ctx, kubeapi.Pod{Namespace: ns, Name: "web-5d8f7c9b4-abcde", Node: "node-b", IPs: []netip.Addr{k8sServerIP},
		HostIP: k8sNodeBIP, Owner: web})
	require.NoError(t, err)
	_, err = o.Pod(ctx, kubeapi.Pod{Namespace: ns, Name: "node-agent", Node: "node-b", IPs: []netip.Addr{k8sNodeBIP},
		HostIP: k8sNodeBIP, HostNetwork: true})
	require.NoError(t, err)
	_, err = o.Service(ctx, ns, "web", k8sClusterIP)
	require.NoError(t, err)

	w.startReceiver(t, h)

	clientPod := podNames(ns, "clients-0", "StatefulSet", "clients", "node-a")
	serverPod := podNames(ns, "web-5d8f7c9b4-abcde", "Deployment", "web", "node-b")

	// Pod to pod: each end names the other.
	client, accepted := w.connect(t, h, k8sServerIP)
	assert.Equal(t, serverPod, waitRecord(t, h, client).names, "the client's record names the server pod")
	assert.Equal(t, clientPod, waitRecord(t, h, accepted).names, "the server's record names the client pod")

	// To the Service's cluster IP.
	client, accepted = w.connect(t, h, k8sClusterIP)
	r := waitRecord(t, h, client)
	assert.Equal(t, k8sClusterIP.String(), r.peer)
	assert.Equal(t, map[string]string{AttrPeerK8sNamespace: ns, AttrPeerK8sService: "web"}, r.names)
	assert.Equal(t, clientPod, waitRecord(t, h, accepted).names)

	// The node's address: the node, not the host-network pod.
	client, _ = w.connect(t, h, k8sNodeBIP)
	assert.Equal(t, map[string]string{AttrPeerK8sNode: "node-b"}, waitRecord(t, h, client).names)

	// An address the cluster does not know.
	client, _ = w.connect(t, h, k8sUnknownIP)
	assert.Empty(t, waitRecord(t, h, client).names)

	// The server pod replaced by another with its address: the records
	// after the change name the new pod.
	require.NoError(t, cluster.Admin.CoreV1().Pods(ns).Delete(ctx, "web-5d8f7c9b4-abcde",
		metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}))
	_, err = o.Pod(ctx, kubeapi.Pod{Namespace: ns, Name: "web-5d8f7c9b4-fghij", Node: "node-b", IPs: []netip.Addr{k8sServerIP},
		HostIP: k8sNodeBIP, Owner: web})
	require.NoError(t, err)
	changed := time.Now()
	replaced := podNames(ns, "web-5d8f7c9b4-fghij", "Deployment", "web", "node-b")
	var last map[string]string
	for time.Since(changed) < 5*time.Second {
		client, _ = w.connect(t, h, k8sServerIP)
		if last = waitRecord(t, h, client).names; assert.ObjectsAreEqual(replaced, last) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	assert.Equal(t, replaced, last, "records after the replacement name the new pod")
	t.Logf("records named the new pod %v after the change", time.Since(changed).Round(time.Millisecond))
}

// An API server away at start, and later: records flow all along, one
// warning per outage says why, and names come back with the server.
func TestK8sAPIServerAway(t *testing.T) {
	kubeapi.Require(t)
	cluster, err := kubeapi.Start() // its own: this test stops it
	require.NoError(t, err)
	defer cluster.Close()
	h := newHarness(t)
	w := newK8sWorld(t, cluster)
	ctx := context.Background()
	require.NoError(t, w.objects.Node(ctx, "node-b", k8sNodeBIP))

	cluster.StopAPIServer()
	core, logs := observer.New(zapcore.InfoLevel)
	h.logger = zap.New(core)
	cfg := Config{RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond}
	cfg.Kubernetes = configoptional.Some(KubernetesConfig{AuthType: kubecache.AuthKubeConfig})
	h.startWith(cfg) // starts though the API server is away
	warnings := func() int {
		return logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("Kubernetes names").Len()
	}

	client, _ := w.connect(t, h, k8sServerIP)
	assert.Empty(t, waitRecord(t, h, client).names, "a record while the API server is away")
	require.Eventually(t, func() bool { return warnings() == 1 }, 20*time.Second, 50*time.Millisecond)

	require.NoError(t, cluster.StartAPIServer())
	_, err = w.objects.Pod(ctx, kubeapi.Pod{Namespace: w.ns, Name: "server", Node: "node-b", IPs: []netip.Addr{k8sServerIP}})
	require.NoError(t, err)
	want := podNames(w.ns, "server", "Pod", "server", "node-b")
	deadline := time.Now().Add(kubeapi.InformersBack)
	var names map[string]string
	for time.Now().Before(deadline) {
		client, _ = w.connect(t, h, k8sServerIP)
		if names = waitRecord(t, h, client).names; assert.ObjectsAreEqual(want, names) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	assert.Equal(t, want, names, "names come back with the API server")
	require.Eventually(t, func() bool { return logs.FilterMessageSnippet("Kubernetes names are back").Len() == 1 },
		kubeapi.InformersBack, 50*time.Millisecond, "every informer back")

	// Away again: records still flow, with what was known.
	cluster.StopAPIServer()
	client, _ = w.connect(t, h, k8sServerIP)
	assert.Equal(t, want, waitRecord(t, h, client).names)
	require.Eventually(t, func() bool { return warnings() == 2 }, 20*time.Second, 50*time.Millisecond)
	client, _ = w.connect(t, h, k8sServerIP)
	assert.Equal(t, want, waitRecord(t, h, client).names)
	require.NoError(t, h.rcv.Shutdown(ctx))
}
