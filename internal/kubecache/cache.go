// Package kubecache names addresses in Kubernetes terms: the pod, its
// namespace, top owner and node; the Service of a cluster IP; the node of a
// node address. It watches the cluster from the API server with informers
// that keep only what those names need (OBI's kubecache is the model:
// transformed stores, metadata-only informers for the owners), so that a
// lookup is a read of memory that never waits for the network.
package kubecache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/connrotation"
	"k8s.io/klog/v2"
)

// podFieldSelector leaves out, on the API server's side, pods that can
// name no address: host-network pods (they have their node's) and pods
// that have ended (the network plugin may give their address to another
// pod). A pod that ends is deleted from the watch.
var podFieldSelector = fields.AndSelectors(
	fields.OneTermNotEqualSelector("spec.hostNetwork", "true"),
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
).String()

// The resources watched, as health and the log name them.
const (
	resourcePods        = "pods"
	resourceServices    = "services"
	resourceNodes       = "nodes"
	resourceReplicaSets = "replicasets.apps"
	resourceJobs        = "jobs.batch"
)

// Resources are the resources the cache lists and watches, cluster-wide:
// the rights its identity needs (verbs list and watch).
var Resources = []schema.GroupResource{
	{Resource: "pods"}, {Resource: "services"}, {Resource: "nodes"},
	{Group: "apps", Resource: "replicasets"}, {Group: "batch", Resource: "jobs"},
}

// Settings configure a Cache.
type Settings struct {
	// REST reaches the API server (RESTConfig makes it from the receiver's
	// configuration).
	REST *rest.Config
	// Logger gets one warning when names go missing and one line when they
	// are back; client-go's own log, at debug level.
	Logger *zap.Logger
	// WarnAfter is how long the API server may fail before the warning
	// (a restart of a few seconds costs no warning). Default 5 s.
	WarnAfter time.Duration
}

// Cache names addresses from what informers keep of the cluster.
type Cache struct {
	logger    *zap.Logger
	index     *index
	health    *health
	informers []cache.SharedIndexInformer
	typed     kubernetes.Interface
	meta      metadata.Interface
	// dialer makes this cache's connections, so that Stop can close them
	// (client-go would keep a shared transport's idle ones open).
	dialer *connrotation.Dialer

	mu      sync.Mutex
	cancel  context.CancelFunc
	stopped chan struct{}
}

// New prepares the informers; nothing reaches the API server before Start.
func New(s Settings) (*Cache, error) {
	if s.REST == nil {
		return nil, errors.New("no API server configuration")
	}
	logger := s.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	warnAfter := s.WarnAfter
	if warnAfter == 0 {
		warnAfter = 5 * time.Second
	}
	c := &Cache{logger: logger, index: newIndex(), health: newHealth(logger, warnAfter)}

	cfg := rest.CopyConfig(s.REST)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "netflowtcpend"
	}
	// Warnings the API server sends along with answers go to the debug log.
	cfg.WarningHandlerWithContext = warningLogger{logger}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &watchObserver{next: rt, health: c.health} })
	c.dialer = connrotation.NewDialer((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	cfg.Dial = c.dialer.DialContext

	// The typed informers ask for protobuf: smaller on the wire and cheaper
	// to encode for the API server (it caches one encoding for all
	// watchers) and to decode here.
	typedCfg := rest.CopyConfig(cfg)
	typedCfg.ContentType = "application/vnd.kubernetes.protobuf"
	typedCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	var err error
	if c.typed, err = kubernetes.NewForConfig(typedCfg); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if c.meta, err = metadata.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubernetes metadata client: %w", err)
	}
	if err := c.makeInformers(); err != nil {
		return nil, err
	}
	return c, nil
}

// makeInformers makes one informer per resource, without indexers (the
// address index is built by their handlers) and without resync.
func (c *Cache) makeInformers() error {
	pods := coreinformers.NewFilteredPodInformer(c.typed, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.FieldSelector = podFieldSelector })
	services := coreinformers.NewServiceInformer(c.typed, metav1.NamespaceAll, 0, cache.Indexers{})
	nodes := coreinformers.NewNodeInformer(c.typed, 0, cache.Indexers{})
	replicaSets := metadatainformer.NewFilteredMetadataInformer(c.meta,
		schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"},
		metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
	jobs := metadatainformer.NewFilteredMetadataInformer(c.meta,
		schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"},
		metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()

	x := c.index
	for _, w := range []struct {
		informer  cache.SharedIndexInformer
		resource  string
		transform cache.TransformFunc
		handler   cache.ResourceEventHandler
	}{
		{pods, resourcePods, transform(cutPod), handler(x.setPod)},
		{services, resourceServices, transform(cutService), handler(x.setService)},
		{nodes, resourceNodes, transform(cutNode), handler(x.setNode)},
		{replicaSets, resourceReplicaSets, transform(cutOwned),
			handler(func(old, cur *owned) { x.setOwned(x.replicaSets, old, cur) })},
		{jobs, resourceJobs, transform(cutOwned),
			handler(func(old, cur *owned) { x.setOwned(x.jobs, old, cur) })},
	} {
		resource := w.resource
		if err := w.informer.SetTransform(w.transform); err != nil {
			return fmt.Errorf("%s informer: %w", resource, err)
		}
		if err := w.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			c.health.fail(resource, err)
		}); err != nil {
			return fmt.Errorf("%s informer: %w", resource, err)
		}
		if _, err := w.informer.AddEventHandler(w.handler); err != nil {
			return fmt.Errorf("%s informer: %w", resource, err)
		}
		c.informers = append(c.informers, w.informer)
	}
	return nil
}

// handler turns an informer's events into calls of set(old, current): nil
// old for an add, nil current for a delete.
func handler[T any](set func(old, cur *T)) cache.ResourceEventHandler {
	as := func(obj any) *T {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		t, _ := obj.(*T)
		return t
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { set(nil, as(obj)) },
		UpdateFunc: func(old, cur any) { set(as(old), as(cur)) },
		DeleteFunc: func(obj any) { set(as(obj), nil) },
	}
}

// Start starts watching and returns at once: names come as the informers
// fill, and an API server that cannot be reached costs one warning, not a
// failure.
func (c *Cache) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return
	}
	// client-go logs through the context's logger: to the debug log.
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logr.New(&zapSink{logger: c.logger})))
	c.cancel = cancel
	c.stopped = make(chan struct{})
	var wg sync.WaitGroup
	for _, inf := range c.informers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inf.RunWithContext(ctx)
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.watchHealth(ctx)
	}()
	go func() {
		defer wg.Done()
		c.checkRights(ctx)
	}()
	go func() {
		wg.Wait()
		close(c.stopped)
	}()
}

// watchHealth logs the warning and the all-clear, and once when every
// informer has its objects.
func (c *Cache) watchHealth(ctx context.Context) {
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	synced := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.health.report()
		if !synced && c.Synced() {
			synced = true
			pods, services, nodes := c.index.counts()
			c.logger.Info("Kubernetes names ready",
				zap.Int("pod_addresses", pods), zap.Int("service_addresses", services),
				zap.Int("node_addresses", nodes), zap.Duration("took", time.Since(start)))
		}
	}
}

// Synced reports whether every informer has had the objects of its
// resource once.
func (c *Cache) Synced() bool {
	for _, inf := range c.informers {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// Lookup returns what the cluster says of an address: a read of memory.
func (c *Cache) Lookup(a netip.Addr) (Peer, bool) {
	return c.index.lookup(a.Unmap())
}

// Stop ends the watches. It is safe without Start and twice.
func (c *Cache) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.stopped
	c.dialer.CloseAll()
}
