//go:build linux

package main

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// links returns the network links (interfaces) of the network namespace
// netns: a test's veth end left in the host's namespace, a bridge made by
// a container network.
func links(netnsFD int) ([]object, error) {
	h, err := netlink.NewHandleAt(netns.NsHandle(netnsFD))
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	list, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var objs []object
	for _, l := range list {
		a := l.Attrs()
		objs = append(objs, object{kind: kindLink, id: fmt.Sprintf("%s index %d", a.Name, a.Index),
			detail: l.Type() + "; remove: ip link delete " + a.Name})
	}
	return objs, nil
}
