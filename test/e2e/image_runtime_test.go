//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/stretchr/testify/require"
)

// The image tests run podman and runc so that they leave the host as they
// found it (make test checks it with test/hostcheck):
//   - no network that makes firewall rules: podman's default bridge network
//     has netavark put nat and filter tables in the host's namespace, and a
//     nat table there turns on connection tracking for every connection of
//     the host. The containers use --network none, or the host's network
//     where the test needs it (as the DaemonSet does);
//   - every piece of state in the test's own directory: podman's and
//     runc's through flags, and what podman keeps elsewhere whatever its
//     flags through scripts/contained.sh;
//   - containers in a cgroup of the test's own, removed after it (podman
//     with cgroupfs would otherwise make libpod_parent at the top of every
//     hierarchy and leave it);
//   - the containers, their cgroups and state removed also when the test
//     binary is interrupted (onInterrupt).

// podman runs podman with a storage of the test's own, and runc: crun
// 1.8 (Debian 12) refuses hosts whose cgroup v2 hierarchy has controllers
// next to v1 ones (hybrid), runc runs everywhere.
type podman struct {
	bin   string
	store string
	// cgroupParent is where the containers' cgroups go (--cgroup-parent).
	cgroupParent string
}

// newPodman returns a podman whose state is in a new directory and whose
// containers' cgroups go into a cgroup that is removed after the test.
func newPodman(t *testing.T) podman {
	t.Helper()
	// Not t.TempDir(): podman refuses a --runroot longer than 50
	// characters, and t.TempDir's path holds the test's name.
	store, err := os.MkdirTemp("", "podman-")
	require.NoError(t, err)
	onInterrupt(t, func() error { return os.RemoveAll(store) })
	p := podman{bin: requireTool(t, "podman"), store: store,
		cgroupParent: fmt.Sprintf("netflowtcpend-podman-%d", os.Getpid())}
	runc := requireTool(t, "runc")
	requireTool(t, "unshare")
	// podman passes its --runtime-flag options to runc but not to the runc
	// that removes a container after it exits (podman's cleanup process),
	// which would then look for it in runc's default state directory
	// (/run/runc); a wrapper passes them to every call.
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %s --root %s \"$@\"\n", runc, filepath.Join(p.store, "runc"))
	require.NoError(t, os.WriteFile(filepath.Join(p.store, "runc.sh"), []byte(wrapper), 0o755))
	// Removed after the containers (cleanups run last first).
	onInterrupt(t, func() error { return removeCgroups(p.cgroupParent) })
	return p
}

func (p podman) cmd(args ...string) *exec.Cmd {
	base := []string{"../../scripts/contained.sh", p.store, p.bin,
		"--root", filepath.Join(p.store, "root"), "--runroot", filepath.Join(p.store, "run"),
		"--tmpdir", filepath.Join(p.store, "tmp"), "--network-config-dir", filepath.Join(p.store, "networks"),
		"--storage-driver", "vfs", "--runtime", filepath.Join(p.store, "runc.sh"), "--cgroup-manager", "cgroupfs",
		"--events-backend", "file"}
	return exec.Command(base[0], append(base[1:], args...)...)
}

// run is podman run with runFlags, the test's cgroup parent and conmon
// left in the test's cgroup (podman would make one for it), then args.
func (p podman) run(args ...string) *exec.Cmd {
	flags := slices.Concat([]string{"run"}, runFlags, []string{"--cgroups", "no-conmon", "--cgroup-parent", "/" + p.cgroupParent})
	return p.cmd(append(flags, args...)...)
}

// removeCgroups removes the cgroup name at the top of every cgroup
// hierarchy (v1 and v2: a container runtime makes it in each), with
// whatever is below it, deepest first.
func removeCgroups(name string) error {
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.FSType != "cgroup" && m.FSType != "cgroup2", false
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		var dirs []string
		err := filepath.WalkDir(filepath.Join(m.Mountpoint, name), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return err
		})
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range slices.Backward(dirs) {
			if err := os.Remove(d); err != nil {
				errs = append(errs, fmt.Errorf("remove the test's cgroup (a container may still run in it): %w", err))
			}
		}
	}
	return errors.Join(errs...)
}
