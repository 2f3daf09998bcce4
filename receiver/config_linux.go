package receiver

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
)

// checkCgroupDir says why path is not a directory of a cgroup v2
// filesystem, or returns nil.
func checkCgroupDir(path string) error {
	err := cgroupv2.Check(path)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s %w", path, errNotExist)
	case errors.Is(err, cgroupv2.ErrNotCgroupV2):
		// Hybrid hosts mount cgroup v1 hierarchies next to the v2 one: say
		// so, rather than only that it is not v2.
		var st unix.Statfs_t
		if unix.Statfs(path, &st) == nil && st.Type == unix.CGROUP_SUPER_MAGIC {
			where := "no cgroup v2 filesystem is mounted"
			if root, rerr := cgroupv2.Root(); rerr == nil {
				where = "cgroup v2 is mounted at " + root
			}
			return fmt.Errorf("%s is in a cgroup v1 hierarchy; eBPF programs attach to cgroup v2 only (%s)", path, where)
		}
	}
	return err
}

// cgroupRoot is the mount point of the cgroup v2 filesystem, what an empty
// cgroup_path watches; "" when it cannot be found (Start says why).
func cgroupRoot() string {
	root, err := cgroupv2.Root()
	if err != nil {
		return ""
	}
	return root
}
