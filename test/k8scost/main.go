//go:build linux

// Command k8scost measures what the kubernetes: block costs (make
// k8s-cost; needs root and make k8s-tools), on a real API server and etcd
// filled with a cluster's worth of objects (-pods, -services, -nodes):
//
//   - the collector: its RSS with kubernetes: on, against the same
//     collector with it off, once names are ready (-rounds of each,
//     interleaved); the target is under 64 MiB of growth at 10,000 pods and
//     2,000 Services;
//   - the API server, for each node's watch: the bytes and objects of the
//     initial sync and of each update, as the collector's client receives
//     them (protobuf), and the API server's CPU and RSS with -watchers
//     collectors' worth of watches syncing and following -updates pod
//     updates.
//
// It prints one table; every figure is of this run, on this machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/kubecache"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/kubeapi"
	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

func main() {
	binary := flag.String("binary", "dist/otelcol-netflowtcpend", "the collector")
	pods := flag.Int("pods", 10000, "pods in the cluster")
	services := flag.Int("services", 2000, "Services in the cluster")
	nodes := flag.Int("nodes", 100, "nodes in the cluster")
	rounds := flag.Int("rounds", 2, "collector runs with kubernetes: on and off each, interleaved")
	settle := flag.Duration("settle", 10*time.Second, "wait after names are ready before reading RSS")
	watchers := flag.String("watchers", "1,10,50", "numbers of collectors' watches to measure the API server with")
	updates := flag.Int("updates", 1000, "pod updates to measure the cost of an update with")
	flag.Parse()
	log.SetFlags(log.Ltime)

	c, err := kubeapi.Start()
	if err != nil {
		log.Fatalf("start the API server: %v", err)
	}
	defer c.Close()
	role, err := kubeapi.ClusterRoleFromManifest("../deploy/daemonset.yaml")
	if err != nil {
		log.Fatal(err)
	}

	start := time.Now()
	counts, err := fill(c, *pods, *services, *nodes)
	if err != nil {
		log.Fatalf("fill the cluster: %v", err)
	}
	log.Printf("made %s in %v", counts, time.Since(start).Round(time.Second))

	var rows [][2]string
	add := func(what string, format string, args ...any) {
		rows = append(rows, [2]string{what, fmt.Sprintf(format, args...)})
	}
	add("date", "%s", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	add("cluster", "%s", counts)

	if *rounds > 0 {
		m, err := collectorMemory(c, role, *binary, *rounds, *settle)
		if err != nil {
			log.Fatalf("collector memory: %v", err)
		}
		add("collector RSS, kubernetes: off (median)", "%.1f MiB", mib(m.off))
		add("collector RSS, kubernetes: on (median)", "%.1f MiB", mib(m.on))
		add("RSS growth (target < 64 MiB)", "%.1f MiB", mib(m.on-m.off))
		add("peak RSS growth (VmHWM)", "%.1f MiB", mib(m.peakOn-m.peakOff))
		add("names ready after (median)", "%v", m.ready.Round(100*time.Millisecond))
	}

	for _, s := range strings.Split(*watchers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("-watchers: %q is not a positive number", s)
		}
		w, err := apiServerCost(c, role, n, *updates)
		if err != nil {
			log.Fatalf("API server cost with %d watchers: %v", n, err)
		}
		if n == 1 || len(rows) < 8 {
			for _, r := range kubecache.Resources {
				name := r.String()
				add("initial sync, "+name, "%d objects, %s (%d B each)", w.objects[name], size(w.bytes[name]), w.bytes[name]/max(1, int64(w.objects[name])))
			}
			add("per pod update, one watch", "%d B", w.updateBytes/int64(*updates))
		}
		add(fmt.Sprintf("API server, %d watches: initial sync", n), "%v, %.2f CPU-s, RSS +%.0f MiB (to %.0f MiB)",
			w.syncTook.Round(100*time.Millisecond), w.syncCPU.Seconds(), mib(w.rssAfterSync-w.rssBefore), mib(w.rssAfterSync))
		add(fmt.Sprintf("API server, %d watches: per pod update", n), "%.0f µs CPU (%d updates in %v)",
			float64(w.updateCPU.Microseconds())/float64(*updates), *updates, w.updateTook.Round(100*time.Millisecond))
	}

	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	fmt.Println()
	for _, r := range rows {
		fmt.Printf("%-*s  %s\n", width, r[0], r[1])
	}
}

type clusterCounts struct{ pods, services, nodes, deployments, statefulSets, daemonSets, jobs, namespaces int }

func (c clusterCounts) String() string {
	return fmt.Sprintf("%d pods, %d Services, %d nodes, %d namespaces (pods of %d Deployments, %d StatefulSets, %d Jobs, and bare; %d DaemonSets)",
		c.pods, c.services, c.nodes, c.namespaces, c.deployments, c.statefulSets, c.jobs, c.daemonSets)
}

// fill makes the cluster: nodes, namespaces of 100 pods each, the pods'
// workloads (mostly Deployments of 5 pods), pods of a realistic size
// (labels, annotations, two containers with environment, probes and
// resources, as a controller and kubelet leave them), and Services.
func fill(c *kubeapi.Cluster, pods, services, nodes int) (clusterCounts, error) {
	ctx := context.Background()
	o := kubeapi.Objects{Client: c.Admin}
	counts := clusterCounts{nodes: nodes}
	for i := range nodes {
		if err := o.Node(ctx, fmt.Sprintf("node-%03d", i), nodeIP(i)); err != nil {
			return counts, err
		}
	}
	perNS := 100
	counts.namespaces = (pods + perNS - 1) / perNS
	for ns := range counts.namespaces {
		if err := o.Namespace(ctx, fmt.Sprintf("team-%03d", ns)); err != nil {
			return counts, err
		}
	}

	type job struct {
		ns, name string
		owner    *metav1.OwnerReference
		ip       netip.Addr
		node     int
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				p, err := o.Pod(ctx, kubeapi.Pod{Namespace: j.ns, Name: j.name, Node: fmt.Sprintf("node-%03d", j.node),
					IPs: []netip.Addr{j.ip}, HostIP: nodeIP(j.node), Owner: j.owner})
				if err == nil {
					err = realistic(ctx, c, p)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	made := 0
	for ns := 0; ns < counts.namespaces && made < pods; ns++ {
		namespace := fmt.Sprintf("team-%03d", ns)
		for w := 0; w < perNS/5 && made < pods; w++ {
			kind := "Deployment"
			switch w % 10 {
			case 7:
				kind = "StatefulSet"
				counts.statefulSets++
			case 8:
				kind = "Job"
				counts.jobs++
			case 9:
				kind = ""
			default:
				counts.deployments++
			}
			name := fmt.Sprintf("app-%02d", w)
			var owner *metav1.OwnerReference
			if kind != "" {
				var err error
				if owner, err = o.Workload(ctx, namespace, kind, name); err != nil {
					close(jobs)
					return counts, err
				}
			}
			for r := 0; r < 5 && made < pods; r++ {
				jobs <- job{ns: namespace, name: fmt.Sprintf("%s-%d", name, r), owner: owner, ip: podIP(made), node: made % nodes}
				made++
			}
		}
	}
	close(jobs)
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return counts, err
	}
	counts.pods = made
	// A few DaemonSets too (their objects; pods above are of the others).
	for i := range 3 {
		if _, err := o.Workload(ctx, "team-000", "DaemonSet", fmt.Sprintf("ds-%d", i)); err != nil {
			return counts, err
		}
		counts.daemonSets++
	}
	for i := range services {
		if _, err := o.Service(ctx, fmt.Sprintf("team-%03d", i%counts.namespaces), fmt.Sprintf("svc-%04d", i), netip.Addr{}); err != nil {
			return counts, err
		}
	}
	counts.services = services
	return counts, nil
}

func nodeIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 250, byte(i >> 8), byte(i)}) }
func podIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 128 + byte(i>>16), byte(i >> 8), byte(i)})
}

// realistic gives a pod what a real one carries beyond what the names
// need: labels and annotations, a second container, environment, probes,
// resources, volume mounts, and container statuses.
func realistic(ctx context.Context, c *kubeapi.Cluster, p *corev1.Pod) error {
	// The spec's containers are immutable after creation, so the size
	// goes into metadata and status, which are not.
	p.Labels["app.kubernetes.io/name"] = p.Name
	p.Labels["app.kubernetes.io/part-of"] = p.Namespace
	p.Labels["pod-template-hash"] = "5d8f7c9b4"
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations["kubectl.kubernetes.io/restartedAt"] = time.Now().UTC().Format(time.RFC3339)
	p.Annotations["prometheus.io/scrape"] = "true"
	p.Annotations["prometheus.io/port"] = "9090"
	p.Annotations["example.com/config-hash"] = strings.Repeat(strconv.FormatUint(rand.Uint64(), 16), 4)
	p, err := c.Admin.CoreV1().Pods(p.Namespace).Update(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	for _, ct := range []string{"app", "sidecar"} {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ct, Ready: true, RestartCount: 0, Image: "example.com/" + ct + ":1.2.3",
			ImageID:     "example.com/" + ct + "@sha256:" + strings.Repeat("ab", 32),
			ContainerID: "containerd://" + strings.Repeat("cd", 32),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			Resources: &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
		})
	}
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	p.Status.StartTime = &now
	_, err = c.Admin.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

type memory struct {
	off, on, peakOff, peakOn int64
	ready                    time.Duration
}

// collectorMemory runs the collector with kubernetes: off and on, rounds
// times each, interleaved, and returns the medians.
func collectorMemory(c *kubeapi.Cluster, role *rbacv1.ClusterRole, binary string, rounds int, settle time.Duration) (memory, error) {
	dir, err := os.MkdirTemp("", "netflowtcpend-k8scost-")
	if err != nil {
		return memory{}, err
	}
	defer os.RemoveAll(dir)
	cfg, err := userConfig(c, role, "k8scost-collector")
	if err != nil {
		return memory{}, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, cfg); err != nil {
		return memory{}, err
	}
	// The collector watches an empty cgroup of its own: what it costs
	// here is its memory at rest, not records.
	root, err := cgroupv2.Root()
	if err != nil {
		return memory{}, err
	}
	watched := filepath.Join(root, fmt.Sprintf("netflowtcpend-k8scost-%d", os.Getpid()))
	if err := os.Mkdir(watched, 0o755); err != nil {
		return memory{}, err
	}
	defer os.Remove(watched)

	var off, on, peakOff, peakOn []int64
	var ready []time.Duration
	for round := range rounds {
		for _, k8s := range []bool{false, true} {
			block := ""
			if k8s {
				block = "\n    kubernetes:\n      auth_type: kubeConfig"
			}
			config := filepath.Join(dir, "collector.yaml")
			if err := os.WriteFile(config, []byte(fmt.Sprintf(`receivers:
  netflow_tcp_end:
    cgroup_path: %s%s
exporters:
  debug:
    verbosity: basic
service:
  pipelines:
    logs:
      receivers: [netflow_tcp_end]
      exporters: [debug]
`, watched, block)), 0o600); err != nil {
				return memory{}, err
			}
			start := time.Now()
			col, err := loadtest.StartCollector(loadtest.CollectorOptions{Binary: binary, Configs: []string{config},
				Env: []string{"KUBECONFIG=" + kubeconfig}})
			if err != nil {
				return memory{}, err
			}
			if k8s {
				deadline := time.Now().Add(3 * time.Minute)
				for !strings.Contains(col.Log(), "Kubernetes names ready") {
					if time.Now().After(deadline) {
						col.Kill()
						return memory{}, fmt.Errorf("names not ready after 3 minutes; the collector's log:\n%s", col.Log())
					}
					time.Sleep(100 * time.Millisecond)
				}
				ready = append(ready, time.Since(start))
			}
			time.Sleep(settle)
			rss, err := col.RSS()
			if err != nil {
				col.Kill()
				return memory{}, err
			}
			peak, err := loadtest.PeakRSS(col.PID())
			if err != nil {
				col.Kill()
				return memory{}, err
			}
			if err := col.Stop(); err != nil {
				return memory{}, fmt.Errorf("stop the collector: %w", err)
			}
			log.Printf("round %d, kubernetes %v: RSS %.1f MiB, peak %.1f MiB", round+1, k8s, mib(rss), mib(peak))
			if k8s {
				on, peakOn = append(on, rss), append(peakOn, peak)
			} else {
				off, peakOff = append(off, rss), append(peakOff, peak)
			}
		}
	}
	return memory{off: median(off), on: median(on), peakOff: median(peakOff), peakOn: median(peakOn), ready: median(ready)}, nil
}

func userConfig(c *kubeapi.Cluster, role *rbacv1.ClusterRole, user string) (*rest.Config, error) {
	if err := (kubeapi.Objects{Client: c.Admin}).Grant(context.Background(), user, role); err != nil {
		return nil, err
	}
	return c.UserConfig(user)
}

type watchCost struct {
	objects      map[string]int
	bytes        map[string]int64
	syncTook     time.Duration
	syncCPU      time.Duration
	rssBefore    int64
	rssAfterSync int64
	updateBytes  int64 // received by one watcher for all updates
	updateCPU    time.Duration
	updateTook   time.Duration
}

var userSeq atomic.Int64

// apiServerCost starts n caches as n collectors would (each its own user,
// so its own connection), measures the API server while they sync, then
// while pods are updated.
func apiServerCost(c *kubeapi.Cluster, role *rbacv1.ClusterRole, n, updates int) (watchCost, error) {
	w := watchCost{objects: map[string]int{}, bytes: map[string]int64{}}
	pid := c.APIServerPID()
	counters := make([]*byteCounter, n)
	caches := make([]*kubecache.Cache, n)
	for i := range n {
		cfg, err := userConfig(c, role, fmt.Sprintf("k8scost-watcher-%d", userSeq.Add(1)))
		if err != nil {
			return w, err
		}
		counters[i] = &byteCounter{bytes: map[string]int64{}}
		cfg.Wrap(counters[i].wrap)
		if caches[i], err = kubecache.New(kubecache.Settings{REST: cfg, Logger: zap.NewNop()}); err != nil {
			return w, err
		}
	}
	defer func() {
		for _, cache := range caches {
			cache.Stop()
		}
	}()
	var err error
	if w.rssBefore, err = loadtest.RSS(pid); err != nil {
		return w, err
	}
	cpu0, err := loadtest.ProcessCPU(pid)
	if err != nil {
		return w, err
	}
	start := time.Now()
	for _, cache := range caches {
		cache.Start()
	}
	for _, cache := range caches {
		for !cache.Synced() {
			if time.Since(start) > 5*time.Minute {
				return w, fmt.Errorf("not synced after 5 minutes")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	w.syncTook = time.Since(start)
	cpu1, err := loadtest.ProcessCPU(pid)
	if err != nil {
		return w, err
	}
	w.syncCPU = cpu1 - cpu0
	if w.rssAfterSync, err = loadtest.RSS(pid); err != nil {
		return w, err
	}
	w.bytes = counters[0].snapshot()
	for _, r := range kubecache.Resources {
		w.objects[r.String()] = objectCount(c, r.String())
	}

	// Updates: an annotation of existing pods, as a controller's or
	// kubelet's status updates would send each pod again to every watch.
	ctx := context.Background()
	list, err := c.Admin.CoreV1().Pods("team-000").List(ctx, metav1.ListOptions{})
	if err != nil {
		return w, fmt.Errorf("list pods to update: %w", err)
	}
	if len(list.Items) == 0 {
		return w, errors.New("no pods to update in team-000")
	}
	before := counters[0].total()
	cpu2, err := loadtest.ProcessCPU(pid)
	if err != nil {
		return w, err
	}
	start = time.Now()
	for i := range updates {
		p := list.Items[i%len(list.Items)]
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"example.com/update":"%d"}}}`, i)
		if _, err := c.Admin.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			return w, err
		}
	}
	// Until the first watcher has them all (each event is about the same
	// size, so its bytes stop growing).
	for last := int64(-1); ; time.Sleep(500 * time.Millisecond) {
		cur := counters[0].total()
		if cur == last {
			break
		}
		last = cur
	}
	w.updateTook = time.Since(start)
	cpu3, err := loadtest.ProcessCPU(pid)
	if err != nil {
		return w, err
	}
	w.updateCPU = cpu3 - cpu2
	w.updateBytes = counters[0].total() - before
	return w, nil
}

func objectCount(c *kubeapi.Cluster, resource string) int {
	ctx := context.Background()
	var n int
	var err error
	switch resource {
	case "pods":
		var l *corev1.PodList
		l, err = c.Admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, p := range l.Items {
				if !p.Spec.HostNetwork && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
					n++
				}
			}
		}
	case "services":
		l, e := c.Admin.CoreV1().Services("").List(ctx, metav1.ListOptions{})
		if err = e; e == nil {
			n = len(l.Items)
		}
	case "nodes":
		l, e := c.Admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err = e; e == nil {
			n = len(l.Items)
		}
	case "replicasets.apps":
		l, e := c.Admin.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
		if err = e; e == nil {
			n = len(l.Items)
		}
	case "jobs.batch":
		l, e := c.Admin.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
		if err = e; e == nil {
			n = len(l.Items)
		}
	}
	if err != nil {
		log.Printf("count %s: %v", resource, err)
	}
	return n
}

// byteCounter counts the response bytes a client receives, by resource.
type byteCounter struct {
	mu    sync.Mutex
	bytes map[string]int64
}

func (b *byteCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err == nil {
			resp.Body = &countingBody{ReadCloser: resp.Body, add: b.adder(kubecache.ResourceOfPath(req.URL.Path))}
		}
		return resp, err
	})
}

func (b *byteCounter) adder(resource string) func(int) {
	return func(n int) {
		b.mu.Lock()
		b.bytes[resource] += int64(n)
		b.mu.Unlock()
	}
}

func (b *byteCounter) snapshot() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int64{}
	for k, v := range b.bytes {
		out[k] = v
	}
	return out
}

func (b *byteCounter) total() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var t int64
	for _, v := range b.bytes {
		t += v
	}
	return t
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type countingBody struct {
	io.ReadCloser
	add func(int)
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.add(n)
	return n, err
}

func median[T int64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func size(b int64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", mib(b))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
