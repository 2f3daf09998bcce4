//go:build linux

package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// An object is one thing on the host that a run can leave behind.
type object struct {
	kind kind
	// id tells it apart from the other objects of its kind: what is
	// compared (a cgroup's path, an nftables table's family and name).
	id string
	// detail says more about it in the report (its type, where it is
	// attached, how to remove it).
	detail string
	// notOurs says why the object is not the run's to answer for even
	// when it is new (for example, a process outside the run holds it).
	notOurs string
}

// A kind is what sort of object something is, as the report names it.
type kind string

const (
	kindNftTable    kind = "nftables table"
	kindNftChain    kind = "nftables chain"
	kindNftRule     kind = "nftables rule"
	kindLegacyTable kind = "x_tables (legacy iptables) table"
	kindCgroup      kind = "cgroup"
	kindNetnsMount  kind = "network namespace bound to a path"
	kindNetnsName   kind = "named network namespace"
	kindLink        kind = "network link"
	kindMount       kind = "mount"
	kindBPFProgram  kind = "BPF program"
	kindBPFMap      kind = "BPF map"
	kindBPFLink     kind = "BPF link"
	kindBPFPin      kind = "pinned BPF object"
	kindRunTemp     kind = "temporary file"
	kindToolState   kind = "container tool state"
)

// kindOrder is the order of kinds in a report: the host-wide effects first.
var kindOrder = []kind{kindNftTable, kindNftChain, kindNftRule, kindLegacyTable, kindCgroup, kindBPFProgram,
	kindBPFLink, kindBPFMap, kindBPFPin, kindNetnsMount, kindNetnsName, kindLink, kindMount, kindToolState, kindRunTemp}

// removalMatters says which kinds count as a difference when an object the
// host had before is gone: things a test could delete. Not BPF objects (their
// holders free them), not the run's own temporary files.
var removalMatters = map[kind]bool{
	kindNftTable: true, kindNftChain: true, kindNftRule: true, kindCgroup: true, kindNetnsMount: true,
	kindNetnsName: true, kindLink: true, kindMount: true, kindBPFPin: true, kindToolState: true,
}

// A snapshot is the objects found on the host at one time.
type snapshot struct {
	objects map[kind]map[string]object
	// unread names what could not be read, and why.
	unread []string
}

func (s *snapshot) add(objs ...object) {
	for _, o := range objs {
		if s.objects[o.kind] == nil {
			s.objects[o.kind] = map[string]object{}
		}
		s.objects[o.kind][o.id] = o
	}
}

// host is what hostcheck compares: the network namespace and TMPDIR it
// looks at, and who it is.
type host struct {
	// netns is a file descriptor of the network namespace to compare.
	netns int
	// runTemp is the run's TMPDIR: every entry in it is the run's.
	runTemp string
	// sharedPaths are paths outside TMPDIR where the tools the tests run
	// keep state, as globs.
	sharedPaths []string
	// self is hostcheck's pid: the processes below it are the run's.
	self int
}

// sharedPaths are where podman, runc, buildah and `ip netns` keep state
// outside TMPDIR when nothing tells them otherwise (the image tests give
// them directories of their own): none of it may appear during a run.
var sharedPaths = []string{
	"/run/libpod", "/run/runc", "/run/crun", "/run/containers", "/run/netns",
	"/dev/shm/libpod*",
	"/var/lib/containers", "/var/lib/cni", "/etc/containers/networks",
	"/var/tmp/container_images_*", "/var/tmp/buildah*", "/var/tmp/netflowtcpend-*",
}

// thisHost is the host as hostcheck sees it: its own network namespace.
func thisHost() (*host, error) {
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open this network namespace: %w", err)
	}
	return &host{netns: fd, sharedPaths: sharedPaths, self: os.Getpid()}, nil
}

func (h *host) close() { unix.Close(h.netns) }

// snapshot reads every kind of object; what it cannot read goes to unread.
func (h *host) snapshot() *snapshot {
	s := &snapshot{objects: map[kind]map[string]object{}}
	procs, err := readProcesses()
	if err != nil {
		s.unread = append(s.unread, fmt.Sprintf("processes: %v", err))
	}
	readers := []struct {
		what string
		read func() ([]object, error)
	}{
		{"firewall", func() ([]object, error) { return firewall(h.netns) }},
		{"cgroups", func() ([]object, error) { return cgroups(h.notOursByName(procs)) }},
		{"network namespaces", func() ([]object, error) { return namedNetns(netnsDir) }},
		{"network links", func() ([]object, error) { return links(h.netns) }},
		{"mounts", mounts},
		{"BPF objects", func() ([]object, error) { return bpfObjects(procs) }},
		{"temporary files", func() ([]object, error) { return tempFiles(h.runTemp, h.sharedPaths) }},
	}
	for _, r := range readers {
		objs, err := r.read()
		s.add(objs...)
		if err != nil {
			s.unread = append(s.unread, r.what+": "+strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}
	return s
}

// difference is what differs between two snapshots.
type difference struct {
	left, removed []object
	// ignored are new objects that are not the run's (see object.notOurs).
	ignored []object
	// processes are the run's processes that outlived the command.
	processes []process
}

func (d difference) empty() bool {
	return len(d.left) == 0 && len(d.removed) == 0 && len(d.processes) == 0
}

// compare returns the objects of after that before did not have (unless
// they are not the run's) and the objects of before that after lacks
// (where removal matters, unless they were not the run's).
func compare(before, after *snapshot) difference {
	var d difference
	for _, k := range kindOrder {
		for _, id := range sortedIDs(after.objects[k]) {
			o := after.objects[k][id]
			if _, had := before.objects[k][id]; had {
				continue
			}
			if o.notOurs != "" {
				d.ignored = append(d.ignored, o)
			} else {
				d.left = append(d.left, o)
			}
		}
		if !removalMatters[k] {
			continue
		}
		for _, id := range sortedIDs(before.objects[k]) {
			o := before.objects[k][id]
			if _, has := after.objects[k][id]; !has && o.notOurs == "" {
				d.removed = append(d.removed, o)
			}
		}
	}
	return d
}

func sortedIDs(m map[string]object) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// String is the report: one line per object, "" when nothing differs.
func (d difference) String() string {
	var b strings.Builder
	line := func(k kind, id, detail string) {
		fmt.Fprintf(&b, "    %s %s", k, id)
		if detail != "" {
			fmt.Fprintf(&b, " (%s)", detail)
		}
		b.WriteString("\n")
	}
	if len(d.processes) > 0 {
		b.WriteString("  processes still running after it ended (now ended by hostcheck):\n")
		for _, p := range d.processes {
			line("process", fmt.Sprint(p.pid), p.cmdline)
		}
	}
	if len(d.left) > 0 {
		b.WriteString("  left behind:\n")
		for _, o := range d.left {
			line(o.kind, o.id, o.detail)
		}
	}
	if len(d.removed) > 0 {
		b.WriteString("  gone (the host had it before):\n")
		for _, o := range d.removed {
			line(o.kind, o.id, "")
		}
	}
	return b.String()
}

// counts says how many objects of each kind the snapshot has.
func (s *snapshot) counts() string {
	var parts []string
	for _, k := range kindOrder {
		parts = append(parts, fmt.Sprintf("%d %s", len(s.objects[k]), k))
	}
	return strings.Join(parts, ", ")
}

// ignoredString lists the new objects that are not the run's, and why.
func (d difference) ignoredString() string {
	var b strings.Builder
	for _, o := range d.ignored {
		fmt.Fprintf(&b, "    %s %s (%s): %s\n", o.kind, o.id, o.detail, o.notOurs)
	}
	return b.String()
}
