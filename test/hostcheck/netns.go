//go:build linux

package main

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
)

// netnsDir is where `ip netns` (and container runtimes) bind network
// namespaces to names.
const netnsDir = "/run/netns"

// namedNetns returns the namespaces bound to a path (nsfs mounts: a named
// network namespace, or any namespace a runtime keeps alive that way) and
// the names in dir (netnsDir). A namespace that only processes hold goes
// with them: hostcheck ends the run's processes that outlive it.
func namedNetns(dir string) ([]object, error) {
	var objs []object
	bound, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("nsfs"))
	if err != nil {
		return nil, err
	}
	for _, m := range bound {
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
