//go:build linux

package cgroupv2

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parseMountinfo reads the fields chooseRoot uses from mountinfo lines.
func parseMountinfo(t *testing.T, text string) []*mountinfo.Info {
	t.Helper()
	var out []*mountinfo.Info
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(l)
		require.GreaterOrEqual(t, len(f), 9, "%q", l)
		m := &mountinfo.Info{Root: f[3], Mountpoint: f[4]}
		_, err := fmt.Sscan(f[0]+" "+f[1], &m.ID, &m.Parent)
		require.NoError(t, err)
		for i, x := range f {
			if x == "-" {
				m.FSType = f[i+1]
			}
		}
		out = append(out, m)
	}
	return out
}

func TestChooseRoot(t *testing.T) {
	for _, tt := range []struct {
		name, mountinfo, want string
	}{
		{"unified host", `
22 1 0:20 / /sys rw - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw`, "/sys/fs/cgroup"},
		{"hybrid host", `
22 1 0:20 / /sys rw - sysfs sysfs rw
49 22 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw
50 49 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
59 49 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw`, "/sys/fs/cgroup/unified"},
		// The sandbox of e2e's TestLeastPrivilegeSandbox, as the
		// collector saw it: a cgroup namespace rooted two levels down,
		// the container's own cgroup2 mount (root "/") at /sys/fs/cgroup,
		// and the host's tree (a tmpfs with the v1 hierarchies and
		// cgroup2 at unified/) bound over it.
		{"hybrid host's tree over a container's own mount", `
22 1 0:20 / /sys rw - sysfs sysfs rw
49 22 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw
59 49 0:38 /../.. /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
77 22 0:60 / /sys ro - sysfs sysfs rw
78 77 0:38 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw
79 78 0:28 / /sys/fs/cgroup ro - tmpfs tmpfs rw
80 79 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
89 79 0:38 /../.. /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw`, "/sys/fs/cgroup/unified"},
		{"unified host's tree over a container's own mount", `
77 1 0:60 / /sys ro - sysfs sysfs rw
78 77 0:38 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw
79 78 0:38 /../../.. /sys/fs/cgroup ro - cgroup2 cgroup2 rw`, "/sys/fs/cgroup"},
		{"the host's tree elsewhere beside the namespace's own", `
77 1 0:60 / /sys ro - sysfs sysfs rw
78 77 0:38 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw
90 1 0:38 /.. /host/cgroup ro - cgroup2 cgroup2 rw`, "/host/cgroup"},
		{"a subtree bind mount comes last", `
26 22 0:23 /system.slice /a rw - cgroup2 cgroup2 rw
27 22 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw`, "/sys/fs/cgroup"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chooseRoot(parseMountinfo(t, tt.mountinfo))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	_, err := chooseRoot(parseMountinfo(t, `
49 22 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw
78 49 0:38 / /sys/fs/cgroup/unified ro - cgroup2 cgroup2 rw
79 78 0:28 / /sys/fs/cgroup/unified ro - tmpfs tmpfs rw`))
	assert.ErrorIs(t, err, ErrNotMounted, "the only cgroup2 mount is covered")
}
