package receiver

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// FilterSettings choose which connection ends become records: those that
// match every Include list that is set and no Exclude list. The collector's
// own sockets (ExcludeSelf) are left out in the kernel already, with their
// DNS messages; the lists are checked here, before any DNS lookup or
// conversion, which is where a record starts to cost.
type FilterSettings struct {
	Include, Exclude Criteria
	ExcludeSelf      bool
}

// Criteria are lists of what a connection may match; an empty list matches
// everything for Include and nothing for Exclude.
type Criteria struct {
	Ports      []uint16       // either side's port
	Prefixes   []netip.Prefix // either side's address
	Directions []bpf.Direction
	Cgroups    []string // cgroup paths relative to the cgroup v2 root, and below
}

func (c Criteria) empty() bool {
	return len(c.Ports) == 0 && len(c.Prefixes) == 0 && len(c.Directions) == 0 && len(c.Cgroups) == 0
}

// keep says whether the record of e, whose socket is in cgroup cgPath,
// passes the filters.
func (f *FilterSettings) keep(e *bpf.Event, cgPath string) bool {
	if !f.Include.empty() {
		in := f.Include
		if len(in.Ports) > 0 && !in.matchPort(e) ||
			len(in.Prefixes) > 0 && !in.matchAddr(e) ||
			len(in.Directions) > 0 && !slices.Contains(in.Directions, e.Direction) ||
			len(in.Cgroups) > 0 && !in.matchCgroup(cgPath) {
			return false
		}
	}
	ex := f.Exclude
	return !(ex.matchPort(e) || ex.matchAddr(e) || slices.Contains(ex.Directions, e.Direction) || ex.matchCgroup(cgPath))
}

func (c Criteria) matchPort(e *bpf.Event) bool {
	return slices.Contains(c.Ports, e.Source.Port()) || slices.Contains(c.Ports, e.Destination.Port())
}

func (c Criteria) matchAddr(e *bpf.Event) bool {
	for _, p := range c.Prefixes {
		if p.Contains(e.Source.Addr()) || p.Contains(e.Destination.Addr()) {
			return true
		}
	}
	return false
}

func (c Criteria) matchCgroup(path string) bool {
	if path == "" {
		return false // unknown: a cgroup removed since
	}
	for _, cg := range c.Cgroups {
		if cg == "/" || path == cg || strings.HasPrefix(path, cg+"/") {
			return true
		}
	}
	return false
}
