//go:build linux

// Package cgroupv2 finds the cgroup v2 filesystem and checks cgroup paths.
// Hosts mount it in different places (/sys/fs/cgroup on modern
// distributions, /sys/fs/cgroup/unified on hybrid ones), so it is looked up
// in /proc/self/mountinfo, never assumed.
package cgroupv2

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

var (
	// ErrNotMounted means no cgroup v2 filesystem is mounted.
	ErrNotMounted = errors.New("no cgroup v2 filesystem is mounted (mount one with 'mount -t cgroup2 none /sys/fs/cgroup')")
	// ErrNotCgroupV2 means a path is not a directory of a cgroup v2 filesystem.
	ErrNotCgroupV2 = errors.New("not a directory on a cgroup v2 filesystem")
)

// Root returns the mount point of the cgroup v2 filesystem. Of the cgroup2
// mounts that are not hidden under a later mount, it prefers the one that
// shows the most of the hierarchy: in a cgroup namespace, mountinfo gives a
// mount's root relative to the namespace's ("/../.." for the host's
// hierarchy bind-mounted into a container, "/" for the container's own,
// which the host's may cover), and a bind mount of a subtree comes last.
func Root() (string, error) {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return "", fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	return chooseRoot(mounts)
}

func chooseRoot(mounts []*mountinfo.Info) (string, error) {
	byID := make(map[int]*mountinfo.Info, len(mounts))
	for _, m := range mounts {
		byID[m.ID] = m
	}
	// A mount on top of another at the same place covers it.
	covered := map[int]bool{}
	for _, m := range mounts {
		if p, ok := byID[m.Parent]; ok && p != m && p.Mountpoint == m.Mountpoint {
			covered[p.ID] = true
		}
	}
	// Hidden: covered, or on a mount that another one covers (unless it
	// is the one on top).
	hidden := func(m *mountinfo.Info) bool {
		if covered[m.ID] {
			return true
		}
		for seen := 0; seen < len(mounts); seen++ {
			p, ok := byID[m.Parent]
			if !ok || p == m {
				return false // the namespace's root
			}
			if covered[p.ID] && p.Mountpoint != m.Mountpoint {
				return true
			}
			m = p
		}
		return false
	}
	var candidates []*mountinfo.Info
	for _, m := range mounts {
		if m.FSType == "cgroup2" && !hidden(m) {
			candidates = append(candidates, m)
		}
	}
	if len(candidates) == 0 {
		return "", ErrNotMounted
	}
	sort.SliceStable(candidates, func(i, j int) bool {
		if wi, wj := width(candidates[i].Root), width(candidates[j].Root); wi != wj {
			return wi > wj
		}
		return len(candidates[i].Mountpoint) < len(candidates[j].Mountpoint)
	})
	return candidates[0].Mountpoint, nil
}

// width ranks a mount's root by how much of the hierarchy it shows: the
// number of levels above the cgroup namespace's root ("/../.." is 2), 0 for
// the namespace's root ("/"), -1 for a subtree ("/system.slice").
func width(root string) int {
	if root == "/" {
		return 0
	}
	up := 0
	for _, c := range strings.Split(strings.TrimPrefix(root, "/"), "/") {
		if c != ".." {
			return -1
		}
		up++
	}
	return up
}

// Check returns nil when path is a directory on a cgroup v2 filesystem.
func Check(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is a file: %w", path, ErrNotCgroupV2)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		hint := ""
		if root, err := Root(); err == nil {
			hint = fmt.Sprintf(" (cgroup v2 is mounted at %s)", root)
		}
		return fmt.Errorf("%s is %w%s", path, ErrNotCgroupV2, hint)
	}
	return nil
}
