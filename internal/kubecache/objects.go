package kubecache

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// The informers keep these instead of the API objects: what the attributes
// need and nothing else (a pod as the API sends it is several kilobytes; a
// node, with its image list, tens). Each embeds the ObjectMeta fields the
// informer machinery reads: the name and namespace (the store's key), the
// UID, and the resourceVersion (an update whose resourceVersion did not
// change counts as a resync, which the handlers here would not be sent).

// pod is a pod, cut to its addresses, node and controller.
type pod struct {
	metav1.ObjectMeta
	node     string
	ips      []netip.Addr // without host-network addresses
	owner    ownerRef     // its controller; kind "" for none
	created  int64        // creation time, Unix seconds
	deleting bool         // deletionTimestamp set: on its way out
}

// ownerRef names an object's controller (or first owner).
type ownerRef struct {
	kind, name string
}

// service is a Service, cut to its cluster IPs (none for a headless one).
type service struct {
	metav1.ObjectMeta
	ips []netip.Addr
}

// node is a Node, cut to its addresses.
type node struct {
	metav1.ObjectMeta
	ips []netip.Addr
}

// owned is a ReplicaSet or a Job, cut to its own controller: the link from
// a pod's owner to its top owner (a Deployment, a CronJob).
type owned struct {
	metav1.ObjectMeta
	owner ownerRef
}

// minimalMeta keeps what the informer machinery reads of an object's
// metadata.
func minimalMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
}

// controllerOf returns an object's controller; without one, its first
// owner (kind "" for none).
func controllerOf(refs []metav1.OwnerReference) ownerRef {
	for _, r := range refs {
		if r.Controller != nil && *r.Controller {
			return ownerRef{kind: r.Kind, name: r.Name}
		}
	}
	if len(refs) > 0 {
		return ownerRef{kind: refs[0].Kind, name: refs[0].Name}
	}
	return ownerRef{}
}

// parseIPs parses addresses as the API writes them, unmapped as records
// carry them, leaving out unparsable ones and those in skip.
func parseIPs(texts []string, skip []netip.Addr) []netip.Addr {
	var ips []netip.Addr
	for _, s := range texts {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		a = a.Unmap()
		if a.IsUnspecified() || containsAddr(skip, a) || containsAddr(ips, a) {
			continue
		}
		ips = append(ips, a)
	}
	return ips
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if a == b {
			return true
		}
	}
	return false
}

// transform returns the informer transform that cuts objects of type In
// to Out with cut. An object already cut (an informer may pass its stored
// objects through again) and the marker of a delete missed while
// disconnected pass unchanged.
func transform[In any, Out any](cut func(*In) *Out) cache.TransformFunc {
	return func(obj any) (any, error) {
		switch o := obj.(type) {
		case *In:
			return cut(o), nil
		case *Out, cache.DeletedFinalStateUnknown:
			return obj, nil
		default:
			var want *In
			return nil, fmt.Errorf("want %T, got %T", want, obj)
		}
	}
}

func cutPod(p *corev1.Pod) *pod {
	out := &pod{
		ObjectMeta: minimalMeta(&p.ObjectMeta),
		node:       p.Spec.NodeName,
		owner:      controllerOf(p.OwnerReferences),
		created:    p.CreationTimestamp.Unix(),
		deleting:   p.DeletionTimestamp != nil,
	}
	// A host-network pod has its node's addresses: it names nothing, the
	// node does. Pods that have ended give their address back to the
	// network plugin, which may hand it to a new pod.
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return out
	}
	texts := make([]string, 0, len(p.Status.PodIPs)+1)
	for _, ip := range p.Status.PodIPs {
		texts = append(texts, ip.IP)
	}
	if len(texts) == 0 && p.Status.PodIP != "" {
		texts = append(texts, p.Status.PodIP)
	}
	hostTexts := make([]string, 0, len(p.Status.HostIPs)+1)
	for _, ip := range p.Status.HostIPs {
		hostTexts = append(hostTexts, ip.IP)
	}
	hostTexts = append(hostTexts, p.Status.HostIP)
	out.ips = parseIPs(texts, parseIPs(hostTexts, nil))
	return out
}

func cutService(s *corev1.Service) *service {
	out := &service{ObjectMeta: minimalMeta(&s.ObjectMeta)}
	if s.Spec.ClusterIP == corev1.ClusterIPNone {
		return out // headless: its name resolves to pods, which name themselves
	}
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 && s.Spec.ClusterIP != "" {
		ips = []string{s.Spec.ClusterIP}
	}
	out.ips = parseIPs(ips, nil)
	return out
}

func cutNode(n *corev1.Node) *node {
	texts := make([]string, 0, len(n.Status.Addresses))
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			texts = append(texts, a.Address)
		}
	}
	return &node{ObjectMeta: minimalMeta(&n.ObjectMeta), ips: parseIPs(texts, nil)}
}

func cutOwned(m *metav1.PartialObjectMetadata) *owned {
	return &owned{ObjectMeta: minimalMeta(&m.ObjectMeta), owner: controllerOf(m.OwnerReferences)}
}
