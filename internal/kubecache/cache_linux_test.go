//go:build linux

package kubecache

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/kubeapi"
)

func TestMain(m *testing.M) {
	// Stop ends every goroutine of a cache, connections included.
	os.Exit(kubeapi.RunTests(m))
}

// deployRole is the ClusterRole that deploy/daemonset.yaml grants the
// collector.
func deployRole(t *testing.T) *rbacv1.ClusterRole {
	t.Helper()
	role, err := kubeapi.ClusterRoleFromManifest("../../deploy/daemonset.yaml")
	require.NoError(t, err)
	return role
}

var userSeq atomic.Int64

// collectorConfig returns the configuration of a new user that has exactly
// role's rights.
func collectorConfig(t *testing.T, c *kubeapi.Cluster, role *rbacv1.ClusterRole) *rest.Config {
	t.Helper()
	user := fmt.Sprintf("collector-%d", userSeq.Add(1))
	require.NoError(t, kubeapi.Objects{Client: c.Admin}.Grant(context.Background(), user, role))
	cfg, err := c.UserConfig(user)
	require.NoError(t, err)
	return cfg
}

// startCache starts a cache as a collector with cfg would, logging to an
// observer, and stops it after the test.
func startCache(t *testing.T, cfg *rest.Config, warnAfter time.Duration) (*Cache, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	c, err := New(Settings{REST: cfg, Logger: zap.New(core), WarnAfter: warnAfter})
	require.NoError(t, err)
	c.Start()
	t.Cleanup(c.Stop)
	return c, logs
}

func waitSynced(t *testing.T, c *Cache) {
	t.Helper()
	require.Eventually(t, c.Synced, 30*time.Second, 50*time.Millisecond, "informers not synced")
}

// eventually waits until the cache says want of addr.
func eventually(t *testing.T, c *Cache, addr netip.Addr, want Peer, found bool) {
	t.Helper()
	eventuallyWithin(t, 10*time.Second, c, addr, want, found)
}

func eventuallyWithin(t *testing.T, within time.Duration, c *Cache, addr netip.Addr, want Peer, found bool) {
	t.Helper()
	var got Peer
	var ok bool
	if !assert.Eventually(t, func() bool {
		got, ok = c.Lookup(addr)
		return ok == found && got == want
	}, within, 20*time.Millisecond) {
		t.Errorf("%s: got %+v (found %v), want %+v (found %v)", addr, got, ok, want, found)
	}
}

func namespace(t *testing.T, o kubeapi.Objects) string {
	t.Helper()
	ns := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	ns = strings.Trim(ns, "-") + fmt.Sprintf("-%d", userSeq.Add(1))
	require.NoError(t, o.Namespace(context.Background(), ns))
	return ns
}

// Every kind of top owner, the node of a pod and of an address, the
// Service of a cluster IP, host-network and ended pods, and addresses no
// one has, as the deploy manifest's ClusterRole lets the collector see
// them.
func TestNames(t *testing.T) {
	c := kubeapi.Shared(t)
	ctx := context.Background()
	o := kubeapi.Objects{Client: c.Admin}
	ns := namespace(t, o)

	nodeIP := netip.MustParseAddr("10.201.0.1")
	require.NoError(t, o.Node(ctx, "names-node-a", nodeIP, netip.MustParseAddr("fd01::1")))

	type podCase struct {
		kind     string // workload kind to make; "" for a bare pod
		wantKind string
		wantName string
		ips      []netip.Addr
	}
	cases := []podCase{
		{"Deployment", "Deployment", "web", []netip.Addr{netip.MustParseAddr("10.200.0.1"), netip.MustParseAddr("fd00::1")}},
		{"ReplicaSet", "ReplicaSet", "lone-rs", []netip.Addr{netip.MustParseAddr("10.200.0.2")}},
		{"StatefulSet", "StatefulSet", "db", []netip.Addr{netip.MustParseAddr("10.200.0.3")}},
		{"DaemonSet", "DaemonSet", "agent", []netip.Addr{netip.MustParseAddr("10.200.0.4")}},
		{"Job", "Job", "migrate-db", []netip.Addr{netip.MustParseAddr("10.200.0.5")}},
		{"CronJob", "CronJob", "nightly", []netip.Addr{netip.MustParseAddr("10.200.0.6")}},
		{"", "Pod", "bare-pod-6", []netip.Addr{netip.MustParseAddr("10.200.0.7")}},
	}
	for i, pc := range cases {
		var owner *metav1.OwnerReference
		if pc.kind != "" {
			var err error
			owner, err = o.Workload(ctx, ns, pc.kind, pc.wantName)
			require.NoError(t, err, pc.kind)
		}
		_, err := o.Pod(ctx, kubeapi.Pod{Namespace: ns, Name: podName(pc.kind, pc.wantName, i),
			Node: "names-node-a", IPs: pc.ips, HostIP: nodeIP, Owner: owner})
		require.NoError(t, err)
	}
	// A host-network pod has its node's address; an ended pod still shows
	// the address it had.
	_, err := o.Pod(ctx, kubeapi.Pod{Namespace: ns, Name: "host-net", Node: "names-node-a",
		IPs: []netip.Addr{nodeIP}, HostIP: nodeIP, HostNetwork: true})
	require.NoError(t, err)
	_, err = o.Pod(ctx, kubeapi.Pod{Namespace: ns, Name: "ended", Node: "names-node-a",
		IPs: []netip.Addr{netip.MustParseAddr("10.200.0.9")}, HostIP: nodeIP, Phase: corev1.PodSucceeded})
	require.NoError(t, err)
	svcIP, err := o.Service(ctx, ns, "frontend", netip.MustParseAddr("10.96.1.10"))
	require.NoError(t, err)

	cache, logs := startCache(t, collectorConfig(t, c, deployRole(t)), 2*time.Second)
	waitSynced(t, cache)

	for i, pc := range cases {
		for _, ip := range pc.ips {
			eventually(t, cache, ip, Peer{Namespace: ns, Pod: podName(pc.kind, pc.wantName, i),
				WorkloadKind: pc.wantKind, WorkloadName: pc.wantName, Node: "names-node-a"}, true)
		}
	}
	eventually(t, cache, nodeIP, Peer{Node: "names-node-a"}, true)
	eventually(t, cache, netip.MustParseAddr("fd01::1"), Peer{Node: "names-node-a"}, true)
	eventually(t, cache, svcIP, Peer{Namespace: ns, Service: "frontend"}, true)
	// IPv4-mapped: records carry plain IPv4, but a caller may not.
	eventually(t, cache, netip.AddrFrom16(svcIP.As16()), Peer{Namespace: ns, Service: "frontend"}, true)
	for _, unknown := range []string{"10.200.0.9", "10.200.0.99", "10.96.1.11", "fd00::99", "127.0.0.1"} {
		eventually(t, cache, netip.MustParseAddr(unknown), Peer{}, false)
	}

	// Later changes: a Service goes, a node gets another address, a pod
	// its first address.
	require.NoError(t, c.Admin.CoreV1().Services(ns).Delete(ctx, "frontend", metav1.DeleteOptions{}))
	eventually(t, cache, svcIP, Peer{}, false)
	n, err := c.Admin.CoreV1().Nodes().Get(ctx, "names-node-a", metav1.GetOptions{})
	require.NoError(t, err)
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "10.202.0.1"})
	_, err = c.Admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually(t, cache, netip.MustParseAddr("10.202.0.1"), Peer{Node: "names-node-a"}, true)
	// A pod that ends gives its address up.
	require.NoError(t, o.SetPodPhase(ctx, ns, "bare-pod-6", corev1.PodFailed))
	eventually(t, cache, netip.MustParseAddr("10.200.0.7"), Peer{}, false)

	assert.Zero(t, logs.FilterLevelExact(zapcore.WarnLevel).Len(), "warnings: %v", logs.All())
	assert.Eventually(t, func() bool { return logs.FilterMessage("Kubernetes names ready").Len() == 1 }, 5*time.Second, 50*time.Millisecond)
}

// podName names the pods of TestNames: a bare pod is its own workload.
func podName(kind, workload string, i int) string {
	if kind == "" {
		return workload
	}
	return fmt.Sprintf("%s-pod-%d", workload, i)
}

// A pod replaced by another with the same address: the new one is named
// within seconds, whether the old one is gone at once or lingers while it
// terminates.
func TestReplacedPod(t *testing.T) {
	c := kubeapi.Shared(t)
	ctx := context.Background()
	o := kubeapi.Objects{Client: c.Admin}
	ns := namespace(t, o)
	require.NoError(t, o.Node(ctx, "replaced-node", netip.MustParseAddr("10.203.0.1")))
	cache, _ := startCache(t, collectorConfig(t, c, deployRole(t)), 2*time.Second)
	waitSynced(t, cache)

	ip := netip.MustParseAddr("10.200.1.1")
	pod := func(name string) Peer {
		return Peer{Namespace: ns, Pod: name, WorkloadKind: "Pod", WorkloadName: name, Node: "replaced-node"}
	}
	newPod := func(name string) {
		_, err := o.Pod(ctx, kubeapi.Pod{Namespace: ns, Name: name, Node: "replaced-node", IPs: []netip.Addr{ip}})
		require.NoError(t, err)
	}
	newPod("first")
	eventually(t, cache, ip, pod("first"), true)

	// Deleted at once, then a new pod gets the address.
	require.NoError(t, c.Admin.CoreV1().Pods(ns).Delete(ctx, "first", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}))
	newPod("second")
	start := time.Now()
	eventually(t, cache, ip, pod("second"), true)
	t.Logf("named the replacement after %v", time.Since(start))

	// Terminating (a graceful delete waits for a kubelet, which never
	// comes) while its replacement already has the address: the
	// replacement wins.
	require.NoError(t, c.Admin.CoreV1().Pods(ns).Delete(ctx, "second", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](600)}))
	newPod("third")
	eventually(t, cache, ip, pod("third"), true)
	// The old one finally goes: the replacement stays named.
	require.NoError(t, c.Admin.CoreV1().Pods(ns).Delete(ctx, "second", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}))
	time.Sleep(500 * time.Millisecond)
	eventually(t, cache, ip, pod("third"), true)
	// And when the last claimant goes, the address is unknown.
	require.NoError(t, c.Admin.CoreV1().Pods(ns).Delete(ctx, "third", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}))
	eventually(t, cache, ip, Peer{}, false)
}

// The deploy manifest as written: its ServiceAccount, bound to its
// ClusterRole in the namespace it names, with a token as the kubelet
// mounts one, gets every name and no warning.
func TestDeployManifestIdentity(t *testing.T) {
	c := kubeapi.Shared(t)
	ctx := context.Background()
	o := kubeapi.Objects{Client: c.Admin}
	token, err := o.ApplyServiceAccountRBAC(ctx, "../../deploy/daemonset.yaml", "observability")
	require.NoError(t, err)
	ns := namespace(t, o)
	require.NoError(t, o.Node(ctx, "sa-node", netip.MustParseAddr("10.206.0.1")))
	owner, err := o.Workload(ctx, ns, "CronJob", "report")
	require.NoError(t, err)
	ip := netip.MustParseAddr("10.200.4.1")
	_, err = o.Pod(ctx, kubeapi.Pod{Namespace: ns, Name: "report-29412345-x", Node: "sa-node", IPs: []netip.Addr{ip}, Owner: owner})
	require.NoError(t, err)

	cfg := &rest.Config{Host: c.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: c.CAPEM()}}
	cache, logs := startCache(t, cfg, time.Second)
	waitSynced(t, cache)
	eventually(t, cache, ip, Peer{Namespace: ns, Pod: "report-29412345-x", WorkloadKind: "CronJob", WorkloadName: "report", Node: "sa-node"}, true)
	time.Sleep(2 * time.Second) // the rights check and a report
	assert.Empty(t, warnings(logs))
	assert.Equal(t, 1, logs.FilterMessageSnippet("Kubernetes names ready").Len())
}

// A collector missing one right of the ClusterRole gets one warning that
// names it. The names still come on this API server: it streams the
// initial list through the watch (so "list" is needed only by servers
// that do not), and a missing "watch" costs a relist every few seconds.
func TestMissingRight(t *testing.T) {
	c := kubeapi.Shared(t)
	ctx := context.Background()
	o := kubeapi.Objects{Client: c.Admin}
	ns := namespace(t, o)
	require.NoError(t, o.Node(ctx, "rbac-node", netip.MustParseAddr("10.204.0.1")))
	owner, err := o.Workload(ctx, ns, "Deployment", "rbac-web")
	require.NoError(t, err)
	podIP := netip.MustParseAddr("10.200.2.1")
	_, err = o.Pod(ctx, kubeapi.Pod{Namespace: ns, Name: "rbac-web-pod", Node: "rbac-node", IPs: []netip.Addr{podIP}, Owner: owner})
	require.NoError(t, err)

	for _, resource := range []string{"pods", "services", "nodes", "replicasets.apps", "jobs.batch"} {
		for _, verb := range Verbs {
			t.Run(verb+"-"+resource, func(t *testing.T) {
				t.Parallel()
				cache, logs := startCache(t, collectorConfig(t, c, kubeapi.Without(deployRole(t), verb, resource)), time.Second)
				require.Eventually(t, func() bool { return len(warnings(logs)) > 0 }, 20*time.Second, 50*time.Millisecond, "no warning")
				w := warnings(logs)[0]
				assert.Contains(t, w.Message, "refuses this collector rights")
				assert.Equal(t, []any{verb + " " + resource}, w.ContextMap()["missing_rights"])
				eventually(t, cache, podIP, Peer{Namespace: ns, Pod: "rbac-web-pod", WorkloadKind: "Deployment",
					WorkloadName: "rbac-web", Node: "rbac-node"}, true)
				// Still the one warning a few retries later.
				time.Sleep(4 * time.Second)
				assert.Len(t, warnings(logs), 1)
			})
		}
	}
}

// The API server unreachable at start and later: lookups answer at once
// meanwhile (with what was known), one warning per outage says why, and
// names come back with the server.
func TestAPIServerAway(t *testing.T) {
	kubeapi.Require(t)
	c, err := kubeapi.Start() // its own: this test stops it
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	o := kubeapi.Objects{Client: c.Admin}
	require.NoError(t, o.Namespace(ctx, "away"))
	require.NoError(t, o.Node(ctx, "away-node", netip.MustParseAddr("10.205.0.1")))
	cfg := collectorConfig(t, c, deployRole(t))
	pod := func(name string, ip netip.Addr) Peer {
		_, err := o.Pod(ctx, kubeapi.Pod{Namespace: "away", Name: name, Node: "away-node", IPs: []netip.Addr{ip}})
		require.NoError(t, err)
		return Peer{Namespace: "away", Pod: name, WorkloadKind: "Pod", WorkloadName: name, Node: "away-node"}
	}
	ip1, ip2 := netip.MustParseAddr("10.200.3.1"), netip.MustParseAddr("10.200.3.2")
	first := pod("first", ip1)

	// Away at start.
	c.StopAPIServer()
	cache, logs := startCache(t, cfg, 2*time.Second)
	require.Eventually(t, func() bool { return len(warnings(logs)) == 1 }, 20*time.Second, 50*time.Millisecond)
	assert.Contains(t, warnings(logs)[0].Message, "cannot be reached")
	assert.Contains(t, fmt.Sprint(warnings(logs)[0].ContextMap()["errors"]), "connection refused")
	lookupTook := timeLookup(cache, ip1)
	assert.Less(t, lookupTook, 100*time.Millisecond, "a lookup must not wait for the API server")
	_, ok := cache.Lookup(ip1)
	assert.False(t, ok)

	require.NoError(t, c.StartAPIServer())
	eventuallyWithin(t, kubeapi.InformersBack, cache, ip1, first, true)
	require.Eventually(t, func() bool { return logs.FilterMessageSnippet("names are back").Len() == 1 }, kubeapi.InformersBack, 50*time.Millisecond)
	assert.Len(t, warnings(logs), 1)

	// Away later: what was known stays known.
	c.StopAPIServer()
	require.Eventually(t, func() bool { return len(warnings(logs)) == 2 }, 20*time.Second, 50*time.Millisecond)
	eventually(t, cache, ip1, first, true)
	assert.Less(t, timeLookup(cache, ip1), 100*time.Millisecond)
	time.Sleep(3 * time.Second)
	assert.Len(t, warnings(logs), 2, "one warning per outage")

	// Back, with a pod made while the collector could not watch.
	require.NoError(t, c.StartAPIServer())
	second := pod("second", ip2)
	eventuallyWithin(t, kubeapi.InformersBack, cache, ip2, second, true)
	require.Eventually(t, func() bool { return logs.FilterMessageSnippet("names are back").Len() == 2 }, kubeapi.InformersBack, 50*time.Millisecond)
}

// warnings are the warnings logged so far (an observer's filters are
// snapshots).
func warnings(logs *observer.ObservedLogs) []observer.LoggedEntry {
	return logs.FilterLevelExact(zapcore.WarnLevel).All()
}

// timeLookup is the slowest of 100 lookups.
func timeLookup(c *Cache, a netip.Addr) time.Duration {
	var worst time.Duration
	for range 100 {
		start := time.Now()
		c.Lookup(a)
		worst = max(worst, time.Since(start))
	}
	return worst
}
