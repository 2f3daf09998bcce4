//go:build linux

package receiver

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/xpdata"
	"go.uber.org/zap"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/kubecache"
)

// namesTable answers lookups from a table: the merge of two answers is
// what is tested here (kubecache's tests ask a real API server).
type namesTable map[netip.Addr]kubecache.Peer

func (n namesTable) Lookup(a netip.Addr) (kubecache.Peer, bool) {
	p, ok := n[a]
	return p, ok
}

func TestK8sPeerWithTranslation(t *testing.T) {
	svc, backend, node, unknown := netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("10.1.0.5"),
		netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.1")
	names := namesTable{
		svc:     {Namespace: "shop", Service: "web"},
		backend: {Namespace: "shop", Pod: "web-1", WorkloadKind: "Deployment", WorkloadName: "web", Node: "node-a"},
		node:    {Node: "node-a"},
	}
	for _, tc := range []struct {
		name             string
		peer, translated netip.Addr
		want             kubecache.Peer
		found            bool
	}{
		{"no translation", svc, netip.Addr{}, names[svc], true},
		{"translated to itself", backend, backend, names[backend], true},
		{"a Service and its backend", svc, backend, kubecache.Peer{Namespace: "shop", Service: "web", Pod: "web-1",
			WorkloadKind: "Deployment", WorkloadName: "web", Node: "node-a"}, true},
		{"an unknown peer translated to a pod", unknown, backend, names[backend], true},
		{"a pod translated to an unknown address", backend, unknown, names[backend], true},
		{"nothing known", unknown, netip.MustParseAddr("192.0.2.2"), kubecache.Peer{}, false},
		{"a node's address translated to a pod: the pod's node", node, backend, kubecache.Peer{Namespace: "shop", Pod: "web-1",
			WorkloadKind: "Deployment", WorkloadName: "web", Node: "node-a"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := k8sPeer(names, tc.peer, tc.translated)
			assert.Equal(t, tc.found, ok)
			assert.Equal(t, tc.want, got)
		})
	}
	// A Service of another namespace than the pod behind it keeps its own
	// namespace and gets no pod of another's.
	other := namesTable{svc: {Namespace: "edge", Service: "gw"}, backend: names[backend]}
	got, _ := k8sPeer(other, svc, backend)
	assert.Equal(t, kubecache.Peer{Namespace: "edge", Service: "gw", Node: "node-a"}, got)
}

// A record's peer is looked up with the translated peer the record
// carries: the Service and its backend pod, in either close order.
func TestK8sPeerOfATranslatedRecord(t *testing.T) {
	client := netip.MustParseAddrPort("10.0.0.1:40000")
	svc, backend := netip.MustParseAddrPort("10.96.0.10:80"), netip.MustParseAddrPort("10.1.0.5:8080")
	names := namesTable{
		svc.Addr():     {Namespace: "shop", Service: "web"},
		backend.Addr(): {Namespace: "shop", Pod: "web-1", Node: "node-a"},
	}
	both := kubecache.Peer{Namespace: "shop", Service: "web", Pod: "web-1", Node: "node-a"}
	x := bpf.Translation{Known: true, Local: client, Peer: backend}
	for _, tc := range []struct {
		name string
		e    bpf.Event
		want kubecache.Peer
	}{
		{"ended here", bpf.Event{Source: client, Destination: svc, EndBy: bpf.EndByLocal, Translation: x}, both},
		{"ended there", bpf.Event{Source: svc, Destination: client, EndBy: bpf.EndByRemote, Translation: x}, both},
		{"translation unknown", bpf.Event{Source: client, Destination: svc, EndBy: bpf.EndByLocal}, names[svc.Addr()]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := k8sPeerOf(names, &tc.e)
			assert.True(t, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestAppendK8sPeer(t *testing.T) {
	var b xpdata.MapBuilder
	appendK8sPeer(&b, &kubecache.Peer{Namespace: "shop", Pod: "web-1", WorkloadKind: "Deployment", WorkloadName: "web", Node: "node-a"})
	m := pcommon.NewMap()
	b.UnsafeIntoMap(m)
	assert.Equal(t, map[string]any{
		AttrPeerK8sNamespace: "shop", AttrPeerK8sPod: "web-1", AttrPeerK8sWorkloadKind: "Deployment",
		AttrPeerK8sWorkloadName: "web", AttrPeerK8sNode: "node-a",
	}, m.AsRaw(), "empty fields are left out")
}

// With metrics.attributes naming them and no logs pipeline, the records
// converted for the metrics carry the peer's Kubernetes names, so points
// are grouped by them.
func TestMetricsGroupByK8sPeer(t *testing.T) {
	cfg := defaultMetricsConfig()
	cfg.Attributes = []string{AttrPeerK8sWorkloadName}
	m := newMetricsSink(metricsSinkSettings{logger: zap.NewNop(), cfg: cfg, hostName: "node",
		next: consumertest.NewNop(), k8s: true}, false)
	defer func() { _ = m.sender.stop(context.Background()) }()
	events := []bpf.Event{benchEvent(0), benchEvent(1), benchEvent(2), benchEvent(3)}
	for i, workload := range []string{"web", "web", "db", ""} {
		end := connectionEnd{event: &events[i]}
		if workload != "" {
			end.k8sPeer, end.hasK8sPeer = kubecache.Peer{Namespace: "shop", WorkloadKind: "Deployment", WorkloadName: workload}, true
		}
		m.add(&end, pcommon.Map{}, 0)
	}
	md, _ := m.agg.Collect(pcommon.NewTimestampFromTime(time.Now()))
	counts := map[string]int64{}
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for i := range ms.Len() {
		if ms.At(i).Name() != "netflow.tcp.connections" {
			continue
		}
		points := ms.At(i).Sum().DataPoints()
		for j := range points.Len() {
			workload := "" // absent: no name
			if v, ok := points.At(j).Attributes().Get(AttrPeerK8sWorkloadName); ok {
				workload = v.Str()
			}
			counts[workload] += points.At(j).IntValue()
		}
	}
	assert.Equal(t, map[string]int64{"web": 2, "db": 1, "": 1}, counts)
}
