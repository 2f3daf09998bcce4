//go:build linux

// Package bpfids tells tests which BPF programs, maps and links a process
// holds, by kernel id, and which of them the kernel still has: the kernel's
// object lists are shared by every process on the host (other test runs
// load programs of the same names at the same time), so a test compares
// the ids its own process or collector held, never names or counts.
package bpfids

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// IDs are kernel object ids, sorted.
type IDs struct {
	Progs []uint32
	Maps  []uint32
	Links []uint32
}

// Len is the number of ids.
func (ids IDs) Len() int { return len(ids.Progs) + len(ids.Maps) + len(ids.Links) }

// Add returns the union of ids and other.
func (ids IDs) Add(other IDs) IDs {
	merge := func(a, b []uint32) []uint32 {
		return slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(a), b...))))
	}
	return IDs{Progs: merge(ids.Progs, other.Progs), Maps: merge(ids.Maps, other.Maps), Links: merge(ids.Links, other.Links)}
}

func (ids IDs) String() string {
	return fmt.Sprintf("programs %v, maps %v, links %v", ids.Progs, ids.Maps, ids.Links)
}

// Held returns the ids of the BPF objects that process pid has file
// descriptors of, from /proc/PID/fd and /proc/PID/fdinfo, and of the maps
// that those programs use (which a loader may hold only through them).
func Held(pid int) (IDs, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return IDs{}, err
	}
	var ids IDs
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		var key string
		var list *[]uint32
		switch target {
		case "anon_inode:bpf-prog":
			key, list = "prog_id", &ids.Progs
		case "anon_inode:bpf-map":
			key, list = "map_id", &ids.Maps
		case "anon_inode:bpf_link":
			key, list = "link_id", &ids.Links
		default:
			continue
		}
		id, err := fdinfoField(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()), key)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return IDs{}, err
		}
		*list = append(*list, id)
	}
	for _, id := range ids.Progs {
		maps, err := programMaps(id)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return IDs{}, err
		}
		ids.Maps = append(ids.Maps, maps...)
	}
	for _, l := range []*[]uint32{&ids.Progs, &ids.Maps, &ids.Links} {
		*l = slices.Compact(slices.Sorted(slices.Values(*l)))
	}
	return ids, nil
}

// programMaps returns the ids of the maps that program id uses.
func programMaps(id uint32) ([]uint32, error) {
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return nil, fmt.Errorf("program %d: %w", id, err)
	}
	mapIDs, ok := info.MapIDs()
	if !ok {
		return nil, fmt.Errorf("program %d: the kernel does not tell its maps", id)
	}
	var ids []uint32
	for _, m := range mapIDs {
		ids = append(ids, uint32(m))
	}
	return ids, nil
}

func fdinfoField(path, key string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && k == key {
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			return uint32(id), err
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no %s", path, key)
}

// Alive returns the ids of ids that the kernel still has. Ids are not
// reused soon (the kernel allocates them cyclically), so an id that is gone
// is the object gone.
func (ids IDs) Alive() (IDs, error) {
	var alive IDs
	var errs []error
	check := func(id uint32, open func(uint32) (interface{ Close() error }, error), into *[]uint32) {
		obj, err := open(id)
		switch {
		case err == nil:
			*into = append(*into, id)
			_ = obj.Close()
		case !errors.Is(err, os.ErrNotExist):
			errs = append(errs, err)
		}
	}
	for _, id := range ids.Progs {
		check(id, func(id uint32) (interface{ Close() error }, error) { return ebpf.NewProgramFromID(ebpf.ProgramID(id)) }, &alive.Progs)
	}
	// Maps are looked for among the kernel's ids, never opened: opening a
	// program array by id gives it a user reference again, and when that
	// goes, the kernel clears the array a second time; if its first
	// clearing (deferred to a work queue after the last descriptor closed)
	// has not run yet, the array is never freed (seen on 6.18: one pair of
	// TLS program arrays in about 100 cycles, when this looked by opening).
	maps, err := mapIDs()
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range ids.Maps {
		if maps[id] {
			alive.Maps = append(alive.Maps, id)
		}
	}
	for _, id := range ids.Links {
		check(id, func(id uint32) (interface{ Close() error }, error) { return link.NewFromID(link.ID(id)) }, &alive.Links)
	}
	return alive, errors.Join(errs...)
}

// Mapped returns the lines of /proc/PID/maps that map a BPF map into
// process pid (a ring buffer's reader, a global's *ebpf.Variable): the
// kernel keeps such a map while it is mapped, whatever its descriptors.
func Mapped(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasSuffix(line, "anon_inode:bpf-map") {
			lines = append(lines, line)
		}
	}
	return lines, nil
}

// DescribeMaps names each map of ids (its type and name), for the message of
// a test that found them still in the kernel. It opens them: call it only
// when the test has failed, as opening a program array can keep it (Alive).
func DescribeMaps(ids []uint32) string {
	var b strings.Builder
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			fmt.Fprintf(&b, " %d (%v)", id, err)
			continue
		}
		if info, err := m.Info(); err == nil {
			fmt.Fprintf(&b, " %d (%s %q)", id, info.Type, info.Name)
		}
		_ = m.Close()
	}
	return strings.TrimSpace(b.String())
}

// mapIDs returns the ids of every map the kernel has, without opening any.
func mapIDs() (map[uint32]bool, error) {
	ids := map[uint32]bool{}
	var id ebpf.MapID
	for {
		next, err := ebpf.MapGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return ids, nil
		}
		if err != nil {
			return nil, fmt.Errorf("next map id after %d: %w", id, err)
		}
		ids[uint32(next)] = true
		id = next
	}
}

// CgroupAttachTypes are the attach points of the receiver's cgroup
// programs.
var CgroupAttachTypes = []ebpf.AttachType{
	ebpf.AttachCGroupInetIngress, ebpf.AttachCGroupInetEgress, ebpf.AttachCGroupInetSockCreate,
}

// Attached returns the programs attached directly to the cgroup v2
// directory at path, at the receiver's attach points (not those inherited
// from its parents).
func Attached(path string) ([]uint32, error) {
	dir, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	var ids []uint32
	for _, typ := range CgroupAttachTypes {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(dir.Fd()), Attach: typ})
		if err != nil {
			return nil, fmt.Errorf("query %s programs of %s: %w", typ, path, err)
		}
		for _, p := range res.Programs {
			ids = append(ids, uint32(p.ID))
		}
	}
	return ids, nil
}
