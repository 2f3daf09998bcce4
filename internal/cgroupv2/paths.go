//go:build linux

package cgroupv2

import (
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Paths maps cgroup ids, which the kernel programs put in records, to cgroup
// paths relative to the mount point of the cgroup v2 filesystem
// ("/system.slice/docker-<id>.scope"). A cgroup's id is the inode number of
// its directory. Paths come from:
//
//   - Learn: the kernel reports each cgroup as it is created (the
//     cgroup_mkdir tracepoint), before any process, hence any socket, can
//     be in it, so a container that lives a few milliseconds is known all
//     the same.
//   - Walks of the tree: Walk (at start), and again whenever a record names
//     an id that nothing here knows, at most once per minRewalk (a cgroup
//     whose creation record was lost, a kernel without the tracepoint).
//
// Learned cgroups, and cgroups that a walk no longer finds (removed since
// the walk before), are kept for records that come late, in bounded memory:
// see keepFor and maxKept.
type Paths struct {
	root      string
	minRewalk time.Duration
	// An id learned or removed is kept for at least keepFor, unless
	// maxKept/2 others are learned or removed meanwhile; at most maxKept
	// are held. Two generations: entries go into young; when young holds
	// maxKept/2 or is keepFor old, old is dropped and young becomes old.
	// No per-entry bookkeeping, and a lookup is two map reads.
	keepFor time.Duration
	maxKept int
	now     func() time.Time

	mu         sync.Mutex
	walked     map[uint64]string // the last walk
	lastWalk   time.Time
	young, old map[uint64]string
	youngSince time.Time
	// The path of the mount point's directory from the root of the
	// hierarchy, which is what the kernel's paths start from; "" when the
	// mount point is the hierarchy's root. Learned from the first new
	// cgroup whose parent is known (see place).
	prefix      string
	prefixKnown bool
	stats       PathStats
}

// Defaults of Paths.
const (
	// A removed cgroup's records come when its last connections end: at
	// once for most, minutes later for a socket its process left behind
	// (FIN_WAIT, retransmission and keepalive timeouts). A learned cgroup
	// that still exists when it is dropped is found by the next walk.
	DefaultKeepFor = 5 * time.Minute
	// About 4 MiB of paths of 200 bytes: a host that creates 100 cgroups
	// a second still keeps each for 80 s.
	DefaultMaxKept = 16384
)

// PathStats counts what a Paths did.
type PathStats struct {
	Learned  uint64 // cgroups learned at creation
	Unplaced uint64 // cgroups reported at creation whose path could not be placed under the mount point
	Walks    uint64 // walks of the tree
	Kept     int    // learned and removed cgroups held now
}

// NewPaths returns a resolver for the hierarchy mounted at root that walks
// the tree at most once per minRewalk.
func NewPaths(root string, minRewalk time.Duration) *Paths {
	return &Paths{
		root: root, minRewalk: minRewalk,
		keepFor: DefaultKeepFor, maxKept: DefaultMaxKept, now: time.Now,
		walked: map[uint64]string{}, young: map[uint64]string{}, old: map[uint64]string{},
	}
}

// Path returns the path of the cgroup with the given id.
func (p *Paths) Path(id uint64) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if path, ok := p.lookup(id); ok {
		return path, true
	}
	if !p.lastWalk.IsZero() && p.now().Sub(p.lastWalk) < p.minRewalk {
		return "", false
	}
	p.walk()
	return p.lookup(id)
}

// Walk reads the tree now.
func (p *Paths) Walk() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.walk()
}

// Learn records a cgroup that the kernel reported at its creation: its id,
// its parent's, and its path from the root of the cgroup v2 hierarchy,
// which is not the mount point's when that is a subtree (a cgroup
// namespace's own mount): the kernel's cgroup_mkdir tracepoint gives the
// path from the hierarchy's root whatever the reader's cgroup namespace.
// It reports whether the path could be placed under the mount point.
func (p *Paths) Learn(id, parent uint64, hierarchyPath string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	rel, ok := p.place(parent, hierarchyPath)
	if !ok {
		p.stats.Unplaced++
		return false
	}
	p.keep(id, rel)
	p.stats.Learned++
	return true
}

// Stats returns what p did so far.
func (p *Paths) Stats() PathStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Kept = len(p.young) + len(p.old)
	return s
}

// place turns a path from the hierarchy's root into one from the mount
// point. A new cgroup's parent existed before it, so it is usually known
// (walked or learned): the path is then the parent's and the new name,
// and the prefix that the mount point adds is learned, for the cgroups
// whose parent is not known (its creation record lost).
func (p *Paths) place(parent uint64, hierarchyPath string) (string, bool) {
	if !strings.HasPrefix(hierarchyPath, "/") {
		return "", false
	}
	if pp, ok := p.lookup(parent); ok {
		rel := path.Join(pp, path.Base(hierarchyPath))
		if prefix, ok := strings.CutSuffix(hierarchyPath, rel); ok && !p.prefixKnown {
			p.prefix, p.prefixKnown = prefix, true
		}
		return rel, true
	}
	if !p.prefixKnown {
		return "", false
	}
	rest, ok := strings.CutPrefix(hierarchyPath, p.prefix)
	if !ok || !strings.HasPrefix(rest, "/") {
		return "", false // outside the mounted subtree
	}
	return rest, true
}

func (p *Paths) lookup(id uint64) (string, bool) {
	if path, ok := p.walked[id]; ok {
		return path, true
	}
	if path, ok := p.young[id]; ok {
		return path, true
	}
	path, ok := p.old[id]
	return path, ok
}

// keep holds id in the young generation, first turning it old when it is
// full or keepFor old.
func (p *Paths) keep(id uint64, path string) {
	now := p.now()
	if len(p.young) >= max(p.maxKept/2, 1) || now.Sub(p.youngSince) >= p.keepFor {
		p.old, p.young, p.youngSince = p.young, make(map[uint64]string, len(p.young)), now
	}
	p.young[id] = path
}

func (p *Paths) walk() {
	p.lastWalk = p.now()
	p.stats.Walks++
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
	// Removed since the walk before: kept for their late records.
	for id, path := range p.walked {
		if _, ok := byID[id]; !ok {
			p.keep(id, path)
		}
	}
	p.walked = byID
}
