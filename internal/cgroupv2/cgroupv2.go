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

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

var (
	// ErrNotMounted means no cgroup v2 filesystem is mounted.
	ErrNotMounted = errors.New("no cgroup v2 filesystem is mounted (mount one with 'mount -t cgroup2 none /sys/fs/cgroup')")
	// ErrNotCgroupV2 means a path is not a directory of a cgroup v2 filesystem.
	ErrNotCgroupV2 = errors.New("not a directory on a cgroup v2 filesystem")
)

// Root returns the mount point of the cgroup v2 filesystem, preferring a
// mount of the whole hierarchy over a bind mount of a subtree.
func Root() (string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil {
		return "", fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	if len(mounts) == 0 {
		return "", ErrNotMounted
	}
	sort.SliceStable(mounts, func(i, j int) bool {
		if (mounts[i].Root == "/") != (mounts[j].Root == "/") {
			return mounts[i].Root == "/"
		}
		return len(mounts[i].Mountpoint) < len(mounts[j].Mountpoint)
	})
	return mounts[0].Mountpoint, nil
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
