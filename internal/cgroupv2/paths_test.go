//go:build linux

package cgroupv2

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The resolver works on any directory tree: a cgroup's id is its
// directory's inode number. These tests use a temporary directory as the
// mount point.

func ino(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(path, &st))
	return st.Ino
}

func tree(t *testing.T, dirs ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range dirs {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	return root
}

// fakeClock is a Paths clock that tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestPathsWalk(t *testing.T) {
	root := tree(t, "system.slice/docker-a.scope")
	p := NewPaths(root, time.Hour)
	got, ok := p.Path(ino(t, filepath.Join(root, "system.slice/docker-a.scope")))
	assert.True(t, ok)
	assert.Equal(t, "/system.slice/docker-a.scope", got)
	got, ok = p.Path(ino(t, root))
	assert.True(t, ok)
	assert.Equal(t, "/", got)
	_, ok = p.Path(1 << 60)
	assert.False(t, ok)
	assert.Equal(t, uint64(1), p.Stats().Walks, "an unknown id walks again only after minRewalk")
}

// A cgroup learned at its creation resolves without a walk, also after it
// was removed, and its children through it.
func TestPathsLearn(t *testing.T) {
	root := tree(t, "system.slice")
	p := NewPaths(root, time.Hour)
	p.Walk()
	slice := ino(t, filepath.Join(root, "system.slice"))

	require.True(t, p.Learn(1001, slice, "/system.slice/docker-a.scope"))
	require.True(t, p.Learn(1002, 1001, "/system.slice/docker-a.scope/init"))
	got, ok := p.Path(1001)
	assert.True(t, ok)
	assert.Equal(t, "/system.slice/docker-a.scope", got)
	got, ok = p.Path(1002)
	assert.True(t, ok)
	assert.Equal(t, "/system.slice/docker-a.scope/init", got)
	assert.Equal(t, PathStats{Learned: 2, Walks: 1, Kept: 2}, p.Stats())
}

// When the mount point is a subtree of the hierarchy (the collector in a
// cgroup namespace with a cgroup2 mount of its own), the kernel's paths
// still start at the hierarchy's root: they are placed under the mount
// point through the parent, and the prefix learned there places the
// cgroups whose parent is unknown.
func TestPathsLearnUnderASubtreeMount(t *testing.T) {
	root := tree(t, "app")
	p := NewPaths(root, time.Hour)
	p.Walk()
	app := ino(t, filepath.Join(root, "app"))

	assert.False(t, p.Learn(2000, 999999, "/kubepods.slice/pod-x.slice/cri-containerd-b.scope/app/lost-parent/x"),
		"neither the parent nor the prefix is known yet")
	require.True(t, p.Learn(2001, app, "/kubepods.slice/pod-x.slice/cri-containerd-b.scope/app/job"))
	got, _ := p.Path(2001)
	assert.Equal(t, "/app/job", got)
	require.True(t, p.Learn(2002, 999999, "/kubepods.slice/pod-x.slice/cri-containerd-b.scope/app/lost-parent/y"))
	got, _ = p.Path(2002)
	assert.Equal(t, "/app/lost-parent/y", got, "placed with the prefix")
	assert.False(t, p.Learn(2003, 999999, "/system.slice/elsewhere"), "outside the mounted subtree")
	assert.False(t, p.Learn(2004, 999999, "/kubepods.slice/pod-x.slice/cri-containerd-b.scope-other/z"), "a sibling that shares the prefix's bytes")
	assert.False(t, p.Learn(2005, app, "relative"), "not from the root")
	s := p.Stats()
	assert.Equal(t, uint64(2), s.Learned)
	assert.Equal(t, uint64(4), s.Unplaced)
}

// Learned and removed cgroups are kept for at least keepFor, but never
// more than maxKept: a host that creates millions of cgroups does not grow
// the map.
func TestPathsKeptMemoryIsBounded(t *testing.T) {
	root := tree(t)
	clock := &fakeClock{t: time.Unix(1000, 0)}
	p := NewPaths(root, time.Hour)
	p.now, p.maxKept = clock.now, 1000
	p.Walk()

	rootID := ino(t, root)
	for id := uint64(1 << 40); id < 1<<40+20_000; id++ {
		require.True(t, p.Learn(id, rootID, "/c"))
		require.LessOrEqual(t, len(p.young)+len(p.old), 1000)
	}
	// The newest maxKept/2 are always there; the oldest are gone.
	for id := uint64(1<<40 + 20_000 - 500); id < 1<<40+20_000; id++ {
		_, ok := p.Path(id)
		require.True(t, ok, id)
	}
	_, ok := p.Path(1 << 40)
	assert.False(t, ok)
	assert.Equal(t, uint64(1), p.Stats().Walks, "looked up without walking again")
}

func TestPathsKeptForKeepFor(t *testing.T) {
	root := tree(t)
	clock := &fakeClock{t: time.Unix(1000, 0)}
	p := NewPaths(root, time.Hour)
	p.now, p.keepFor = clock.now, time.Minute
	p.Walk()
	rootID := ino(t, root)

	require.True(t, p.Learn(1, rootID, "/one"))
	clock.t = clock.t.Add(59 * time.Second)
	require.True(t, p.Learn(2, rootID, "/two"))
	clock.t = clock.t.Add(2 * time.Second)
	require.True(t, p.Learn(3, rootID, "/three")) // young is a minute old: it turns old
	for _, id := range []uint64{1, 2, 3} {
		_, ok := p.Path(id)
		assert.True(t, ok, "kept for at least a minute: %d", id)
	}
	clock.t = clock.t.Add(61 * time.Second)
	require.True(t, p.Learn(4, rootID, "/four")) // the old generation goes
	_, ok := p.Path(1)
	assert.False(t, ok, "kept for at most two minutes")
	_, ok = p.Path(3)
	assert.True(t, ok)
	assert.Equal(t, 2, p.Stats().Kept)
}

// A cgroup that the last walk found and the next one does not (removed) is
// kept for its late records.
func TestPathsKeepRemovedCgroups(t *testing.T) {
	root := tree(t, "gone")
	p := NewPaths(root, 0)
	gone := ino(t, filepath.Join(root, "gone"))
	p.Walk()
	require.NoError(t, os.Remove(filepath.Join(root, "gone")))
	p.Walk()
	got, ok := p.Path(gone)
	assert.True(t, ok)
	assert.Equal(t, "/gone", got)
	assert.Equal(t, 1, p.Stats().Kept)
}
