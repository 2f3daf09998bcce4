//go:build linux

package receiver

import (
	"net/netip"

	"go.opentelemetry.io/collector/pdata/xpdata"
	"go.uber.org/zap"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/kubecache"
)

// numK8sPeerAttributes is the most netflow.peer.k8s.* attributes of a
// record.
const numK8sPeerAttributes = 6

// peerNamer names addresses in Kubernetes terms (kubecache.Cache): a read
// of memory.
type peerNamer interface {
	Lookup(netip.Addr) (kubecache.Peer, bool)
}

// k8sPeer returns what the cluster says of the peer: of its address as
// this socket sees it (a Service's cluster IP, a pod) and of the address
// the packets reach, where NAT translated it (the pod behind that cluster
// IP); invalid translated for none. The first answer wins field by field.
func k8sPeer(names peerNamer, peer, translated netip.Addr) (kubecache.Peer, bool) {
	p, ok := names.Lookup(peer)
	if !translated.IsValid() || translated == peer {
		return p, ok
	}
	t, tok := names.Lookup(translated)
	if !tok {
		return p, ok
	}
	if !ok {
		return t, true
	}
	fill := func(dst *string, src string) {
		if *dst == "" {
			*dst = src
		}
	}
	if p.Namespace == "" || p.Namespace == t.Namespace {
		// The pod's own names, where the peer's are of the same namespace
		// (a Service and its backend) or none.
		fill(&p.Namespace, t.Namespace)
		fill(&p.Pod, t.Pod)
		fill(&p.WorkloadKind, t.WorkloadKind)
		fill(&p.WorkloadName, t.WorkloadName)
	}
	fill(&p.Node, t.Node)
	fill(&p.Service, t.Service)
	return p, true
}

// k8sPeerOf returns what the cluster says of a record's peer: the remote
// side in the local socket's view.
func k8sPeerOf(names peerNamer, e *bpf.Event) (kubecache.Peer, bool) {
	peer := e.Peer()
	// Where NAT's translation of the peer is known (a Service's backend
	// behind its cluster IP), it is the second address to look up.
	var translated netip.Addr
	if x := e.Translation; x.Known && x.Peer.Addr() != peer.Addr() {
		translated = x.Peer.Addr()
	}
	return k8sPeer(names, peer.Addr(), translated)
}

// startK8sNames starts naming peers from the API server when the
// kubernetes: block is set; nil when it is not. Names cost no record: an
// API server that cannot be configured (no service account token, no
// kubeconfig) costs one warning and the names, and one that cannot be
// reached is retried in the background (kubecache says so once).
func startK8sNames(cfg *Config, logger *zap.Logger) *kubecache.Cache {
	k := cfg.Kubernetes.Get()
	if k == nil {
		return nil
	}
	rest, err := kubecache.RESTConfig(k.AuthType, k.Context)
	if err == nil {
		var c *kubecache.Cache
		if c, err = kubecache.New(kubecache.Settings{REST: rest, Logger: logger}); err == nil {
			c.Start()
			logger.Info("Naming peers from the Kubernetes API server", zap.String("server", rest.Host),
				zap.String("auth_type", string(k.AuthType)))
			return c
		}
	}
	logger.Warn("Kubernetes names are off: the kubernetes: block found no API server to ask; records flow without netflow.peer.k8s.* attributes",
		zap.Error(err))
	return nil
}

// appendK8sPeer appends the netflow.peer.k8s.* attributes that p has.
func appendK8sPeer(a *xpdata.MapBuilder, p *kubecache.Peer) {
	for _, kv := range [...]struct{ key, value string }{
		{AttrPeerK8sNamespace, p.Namespace},
		{AttrPeerK8sPod, p.Pod},
		{AttrPeerK8sWorkloadKind, p.WorkloadKind},
		{AttrPeerK8sWorkloadName, p.WorkloadName},
		{AttrPeerK8sNode, p.Node},
		{AttrPeerK8sService, p.Service},
	} {
		if kv.value != "" {
			a.AppendEmpty(kv.key).SetStr(kv.value)
		}
	}
}
