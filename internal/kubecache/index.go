package kubecache

import (
	"net/netip"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// Peer is what the cluster says of an address. Empty fields are unknown.
type Peer struct {
	Namespace    string // the pod's or Service's
	Pod          string
	WorkloadKind string // the pod's top owner: Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod, ...
	WorkloadName string
	Node         string // the pod's node, or the node whose address this is
	Service      string // the Service whose cluster IP this is
}

// claims holds, for each address, the objects that claim it, oldest
// first: usually one; two pods may claim one address for a moment when a
// pod is replaced. Objects are known by UID, with the addresses they were
// indexed under: a delete may carry the object in a later state than the
// one indexed (a pod that ended, whose addresses no longer count).
type claims[T any] struct {
	byAddr map[netip.Addr][]*T
	byUID  map[types.UID]indexed[T]
}

type indexed[T any] struct {
	obj *T
	ips []netip.Addr
}

func newClaims[T any]() claims[T] {
	return claims[T]{byAddr: map[netip.Addr][]*T{}, byUID: map[types.UID]indexed[T]{}}
}

// set indexes obj, known by uid, under ips, instead of what was indexed
// for uid before; a nil obj removes uid.
func (c claims[T]) set(uid types.UID, obj *T, ips []netip.Addr) {
	if prev, ok := c.byUID[uid]; ok {
		for _, a := range prev.ips {
			list := slices.DeleteFunc(c.byAddr[a], func(o *T) bool { return o == prev.obj })
			if len(list) == 0 {
				delete(c.byAddr, a)
			} else {
				c.byAddr[a] = list
			}
		}
		delete(c.byUID, uid)
	}
	if obj == nil {
		return
	}
	for _, a := range ips {
		c.byAddr[a] = append(c.byAddr[a], obj)
	}
	c.byUID[uid] = indexed[T]{obj: obj, ips: ips}
}

// last is the newest claim of a, nil if none.
func (c claims[T]) last(a netip.Addr) *T {
	list := c.byAddr[a]
	if len(list) == 0 {
		return nil
	}
	return list[len(list)-1]
}

type objectKey struct{ namespace, name string }

// index answers lookups by address. The informers' handlers change it, one
// object at a time; lookups read it. Both hold the lock for a few map
// operations only.
type index struct {
	mu       sync.RWMutex
	pods     claims[pod]
	services claims[service]
	nodes    claims[node]
	// The controllers of ReplicaSets and Jobs, by namespace and name.
	replicaSets map[objectKey]ownerRef
	jobs        map[objectKey]ownerRef
}

func newIndex() *index {
	return &index{
		pods: newClaims[pod](), services: newClaims[service](), nodes: newClaims[node](),
		replicaSets: map[objectKey]ownerRef{}, jobs: map[objectKey]ownerRef{},
	}
}

// lookup returns what the cluster says of a. A node's address names the
// node only, whatever pod claims it too (host-network pods are left out in
// any case); a cluster IP names its Service; a pod's address names the pod,
// its top owner and its node.
func (x *index) lookup(a netip.Addr) (Peer, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if n := x.nodes.last(a); n != nil {
		return Peer{Node: n.Name}, true
	}
	if s := x.services.last(a); s != nil {
		return Peer{Namespace: s.Namespace, Service: s.Name}, true
	}
	if p := bestPod(x.pods.byAddr[a]); p != nil {
		kind, name := x.workload(p)
		return Peer{Namespace: p.Namespace, Pod: p.Name, WorkloadKind: kind, WorkloadName: name, Node: p.node}, true
	}
	return Peer{}, false
}

// bestPod chooses among pods claiming one address: one that is not being
// deleted over one that is (its replacement got the address), then the
// newest.
func bestPod(list []*pod) *pod {
	var best *pod
	for _, p := range list {
		switch {
		case best == nil:
			best = p
		case best.deleting != p.deleting:
			if !p.deleting {
				best = p
			}
		case p.created >= best.created:
			best = p
		}
	}
	return best
}

// workload returns the pod's top owner: the Deployment of its ReplicaSet,
// the CronJob of its Job, its controller, or the pod itself. A ReplicaSet
// or Job not (yet) known is named itself.
func (x *index) workload(p *pod) (kind, name string) {
	o := p.owner
	switch o.kind {
	case "":
		return "Pod", p.Name
	case "ReplicaSet":
		if top, ok := x.replicaSets[objectKey{p.Namespace, o.name}]; ok && top.kind == "Deployment" {
			return top.kind, top.name
		}
	case "Job":
		if top, ok := x.jobs[objectKey{p.Namespace, o.name}]; ok && top.kind == "CronJob" {
			return top.kind, top.name
		}
	}
	return o.kind, o.name
}

func (x *index) counts() (pods, services, nodes int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.pods.byAddr), len(x.services.byAddr), len(x.nodes.byAddr)
}

// Changes, from the informers' handlers: old and cur are an object's
// state before and after (old nil: added; cur nil: deleted).

func (x *index) setPod(old, cur *pod) {
	x.mu.Lock()
	defer x.mu.Unlock()
	setClaims(x.pods, old, cur, func(p *pod) (types.UID, []netip.Addr) { return p.UID, p.ips })
}

func (x *index) setService(old, cur *service) {
	x.mu.Lock()
	defer x.mu.Unlock()
	setClaims(x.services, old, cur, func(s *service) (types.UID, []netip.Addr) { return s.UID, s.ips })
}

func (x *index) setNode(old, cur *node) {
	x.mu.Lock()
	defer x.mu.Unlock()
	setClaims(x.nodes, old, cur, func(n *node) (types.UID, []netip.Addr) { return n.UID, n.ips })
}

// setClaims applies a change to c. An update whose UID changed (the object
// was deleted and made again while the watch was away) replaces the old.
func setClaims[T any](c claims[T], old, cur *T, key func(*T) (types.UID, []netip.Addr)) {
	if old != nil {
		uid, _ := key(old)
		if cur == nil {
			c.set(uid, nil, nil)
			return
		}
		if curUID, _ := key(cur); curUID != uid {
			c.set(uid, nil, nil)
		}
	}
	if cur != nil {
		uid, ips := key(cur)
		c.set(uid, cur, ips)
	}
}

// setOwned records (cur) or forgets (cur nil) a ReplicaSet's or Job's
// controller in m.
func (x *index) setOwned(m map[objectKey]ownerRef, old, cur *owned) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old != nil {
		delete(m, objectKey{old.Namespace, old.Name})
	}
	if cur != nil {
		m[objectKey{cur.Namespace, cur.Name}] = cur.owner
	}
}
