//go:build linux

package receiver

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// filters decide which connection ends become records: those that match
// every include list that is set and no exclude list. The collector's own
// sockets (exclude_self) are left out in the kernel already, with their DNS
// messages; the lists are checked here, before any DNS lookup or
// conversion, which is where a record starts to cost.
type filters struct {
	include, exclude FilterConfig
	// The cgroups of include and exclude, relative to the cgroup v2 root
	// as the resolver gives a record's cgroup ("/system.slice").
	includeCgroups, excludeCgroups []string
}

// newFilters takes the validated configuration; root is the mount point of
// the cgroup v2 filesystem.
func newFilters(cfg FiltersConfig, root string) filters {
	return filters{
		include: cfg.Include, exclude: cfg.Exclude,
		includeCgroups: relativeCgroups(cfg.Include.Cgroups, root),
		excludeCgroups: relativeCgroups(cfg.Exclude.Cgroups, root),
	}
}

func relativeCgroups(paths []string, root string) []string {
	var rel []string
	for _, p := range paths {
		rel = append(rel, filepath.Clean("/"+strings.TrimPrefix(p, root)))
	}
	return rel
}

// keep says whether the record of e, whose socket is in cgroup cgPath,
// passes the filters.
func (f *filters) keep(e *bpf.Event, cgPath string) bool {
	in := &f.include
	if len(in.Ports) > 0 && !in.matchPort(e) ||
		len(in.CIDRs) > 0 && !in.matchAddr(e) ||
		len(in.Directions) > 0 && !in.matchDirection(e) ||
		len(f.includeCgroups) > 0 && !matchCgroup(f.includeCgroups, cgPath) {
		return false
	}
	ex := &f.exclude
	return !ex.matchPort(e) && !ex.matchAddr(e) && !ex.matchDirection(e) && !matchCgroup(f.excludeCgroups, cgPath)
}

func (c *FilterConfig) matchPort(e *bpf.Event) bool {
	return slices.Contains(c.Ports, int(e.Source.Port())) || slices.Contains(c.Ports, int(e.Destination.Port()))
}

func (c *FilterConfig) matchAddr(e *bpf.Event) bool {
	for _, p := range c.CIDRs {
		if p.Contains(e.Source.Addr()) || p.Contains(e.Destination.Addr()) {
			return true
		}
	}
	return false
}

func (c *FilterConfig) matchDirection(e *bpf.Event) bool {
	return slices.Contains(c.Directions, e.Direction)
}

// matchCgroup says whether path is one of cgroups or below one of them.
func matchCgroup(cgroups []string, path string) bool {
	if path == "" {
		return false // unknown: a cgroup removed since
	}
	for _, cg := range cgroups {
		if within(path, cg) {
			return true
		}
	}
	return false
}
