//go:build linux

package cgroupv2

import (
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Paths maps cgroup ids, which the kernel programs put in records, to cgroup
// paths relative to the cgroup v2 root ("/system.slice/docker-<id>.scope").
// A cgroup's id is the inode number of its directory. Ids it does not know
// make it walk the hierarchy again, at most once per minRewalk, so that new
// cgroups (containers started later) are found without a walk per record.
type Paths struct {
	root      string
	minRewalk time.Duration

	mu       sync.Mutex
	byID     map[uint64]string
	lastWalk time.Time
}

// NewPaths returns a resolver for the hierarchy mounted at root.
func NewPaths(root string, minRewalk time.Duration) *Paths {
	return &Paths{root: root, minRewalk: minRewalk, byID: map[uint64]string{}}
}

// Path returns the path of the cgroup with the given id.
func (p *Paths) Path(id uint64) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if path, ok := p.byID[id]; ok {
		return path, true
	}
	if time.Since(p.lastWalk) < p.minRewalk {
		return "", false
	}
	p.walk()
	path, ok := p.byID[id]
	return path, ok
}

func (p *Paths) walk() {
	p.lastWalk = time.Now()
	byID := map[uint64]string{}
	_ = filepath.WalkDir(p.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil // a cgroup removed while walking; keep going
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			rel, _ := filepath.Rel(p.root, path)
			byID[st.Ino] = filepath.Clean("/" + filepath.ToSlash(rel))
		}
		return nil
	})
	byID[1] = "/" // the root's id, whatever its inode says
	p.byID = byID
}
