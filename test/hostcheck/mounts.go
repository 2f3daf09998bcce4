//go:build linux

package main

import (
	"fmt"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// systemMounts are mount points that the system makes and removes by
// itself: autofs-triggered binfmt_misc, login sessions' runtime
// directories, systemd's service credentials, snaps, and the container
// engines that the tests do not use (theirs come and go with the
// containers users run).
var systemMounts = []string{
	"/proc/sys/fs/binfmt_misc", "/run/user/", "/run/credentials/", "/snap/", "/var/lib/snapd/", "/run/snapd/",
	"/var/lib/docker/", "/run/docker/", "/var/lib/containerd/", "/run/containerd/", "/var/lib/kubelet/",
}

// mounts returns the mounts of hostcheck's mount namespace (namespaces
// bound to a path are namedNetns's), except systemMounts. Mounts stacked on
// one point with the same type and source are numbered.
func mounts() ([]object, error) {
	list, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	var objs []object
	seen := map[string]int{}
	for _, m := range list {
		if m.FSType == "nsfs" || isSystemMount(m.Mountpoint) {
			continue
		}
		id := fmt.Sprintf("%s (%s from %s)", m.Mountpoint, m.FSType, m.Source)
		seen[id]++
		if n := seen[id]; n > 1 {
			id += fmt.Sprintf(" #%d", n)
		}
		objs = append(objs, object{kind: kindMount, id: id, detail: "remove: umount " + m.Mountpoint})
	}
	return objs, nil
}

func isSystemMount(point string) bool {
	for _, p := range systemMounts {
		if point == strings.TrimSuffix(p, "/") || strings.HasPrefix(point, p) {
			return true
		}
	}
	return false
}
