//go:build linux

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// netnsDir is where `ip netns` (and container runtimes) bind network
// namespaces to names.
const netnsDir = "/run/netns"

// namedNetns returns the network namespaces bound to a path (nsfs mounts
// of a net:[...] namespace: `ip netns add`, or a runtime keeping one alive)
// and the names in dir (netnsDir). Other kinds of namespace bound to a path
// are not compared (snapd binds mount namespaces as it refreshes snaps). A
// namespace that only processes hold goes with them: hostcheck ends the
// run's processes that outlive it.
func namedNetns(dir string) ([]object, error) {
	var objs []object
	bound, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("nsfs"))
	if err != nil {
		return nil, err
	}
	for _, m := range bound {
		if !strings.HasPrefix(m.Root, "net:[") {
			continue
		}
		objs = append(objs, object{kind: kindNetnsMount, id: m.Mountpoint, detail: m.Root + "; remove: umount " + m.Mountpoint})
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return objs, nil
	}
	for _, e := range entries {
		objs = append(objs, object{kind: kindNetnsName, id: filepath.Join(dir, e.Name()), detail: "remove: ip netns delete " + e.Name()})
	}
	return objs, err
}
