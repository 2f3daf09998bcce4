//go:build linux

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/moby/sys/mountinfo"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/bpfids"
)

// bpfObjects returns the host's BPF programs, maps and links, and the
// objects pinned in every bpf filesystem. A program, map or link that a
// process holds (through a file descriptor of it, or of a link, program or
// map that refers to it) is not the run's: hostcheck has ended the run's
// processes, so its holder is someone else, who frees it. So is a map that
// a program uses (the program is what is reported), and a program attached
// only to systemd units' cgroups (systemd attaches programs to the units
// it starts).
func bpfObjects(procs map[int]process) ([]object, error) {
	progs, maps, links, err := listBPF()
	if err != nil {
		return nil, err
	}
	holders, err := bpfHolders(procs, progs, maps, links)
	if err != nil {
		return nil, err
	}
	var objs []object
	var loose []uint32 // programs nothing holds
	for _, p := range progs {
		if holders.progs[p.id] == 0 {
			loose = append(loose, p.id)
		}
	}
	attached, err := cgroupAttachments(loose)
	if err != nil {
		return nil, err
	}
	for _, p := range progs {
		o := object{kind: kindBPFProgram, id: fmt.Sprint(p.id), detail: fmt.Sprintf("%s %q", p.typ, p.name)}
		switch where := attached[p.id]; {
		case holders.progs[p.id] != 0:
			o.notOurs = heldBy(procs, holders.progs[p.id])
		case len(where) > 0 && !slices.ContainsFunc(where, func(w attachment) bool { return !w.unit }):
			o.notOurs = "attached only to systemd units' cgroups"
		case len(where) > 0:
			var s []string
			for _, w := range where {
				s = append(s, w.String())
			}
			o.detail += ", held by no process, attached to " + strings.Join(s, ", ")
		default:
			o.detail += ", held by no process: pinned, or attached to a device, socket or netns"
		}
		objs = append(objs, o)
	}
	usedBy := map[uint32]uint32{}
	for _, p := range progs {
		for _, m := range p.maps {
			usedBy[m] = p.id
		}
	}
	for _, m := range maps {
		o := object{kind: kindBPFMap, id: fmt.Sprint(m.id), detail: fmt.Sprintf("%s %q", m.typ, m.name)}
		switch {
		case holders.maps[m.id] != 0:
			o.notOurs = heldBy(procs, holders.maps[m.id])
		case usedBy[m.id] != 0:
			o.notOurs = fmt.Sprintf("used by program %d", usedBy[m.id])
		default:
			o.detail += ", held by no process: pinned?"
		}
		objs = append(objs, o)
	}
	for _, l := range links {
		o := object{kind: kindBPFLink, id: fmt.Sprint(l.id), detail: fmt.Sprintf("%s link of program %d", linkTypeName(l.typ), l.prog)}
		if holders.links[l.id] != 0 {
			o.notOurs = heldBy(procs, holders.links[l.id])
		} else {
			o.detail += ", held by no process: pinned?"
		}
		objs = append(objs, o)
	}
	pins, err := bpfPins()
	return append(objs, pins...), err
}

// linkTypeName names the kinds of link a test could make.
func linkTypeName(t link.Type) string {
	switch t {
	case link.CgroupType:
		return "cgroup"
	case link.NetNsType:
		return "netns"
	case link.XDPType:
		return "xdp"
	case link.TCXType:
		return "tcx"
	case link.TracingType:
		return "tracing"
	case link.RawTracepointType:
		return "raw tracepoint"
	case link.IterType:
		return "iterator"
	}
	return fmt.Sprintf("type-%d", t)
}

func heldBy(procs map[int]process, pid int) string {
	return fmt.Sprintf("held by process %d (%s)", pid, procs[pid].comm)
}

type bpfProgram struct {
	id   uint32
	typ  ebpf.ProgramType
	name string
	maps []uint32
}

type bpfMap struct {
	id   uint32
	typ  ebpf.MapType
	name string
	// progs and inner are what a program array or a map of maps refers to.
	progs, inner []uint32
}

type bpfLink struct {
	id, prog uint32
	typ      link.Type
}

// listBPF lists every BPF program, map and link by id (cilium/ebpf's
// iteration over the kernel's ids), closing each after reading it.
func listBPF() ([]bpfProgram, []bpfMap, []bpfLink, error) {
	var progs []bpfProgram
	err := eachID(ebpf.ProgramGetNextID, func(id ebpf.ProgramID) error {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			return err
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			return err
		}
		bp := bpfProgram{id: uint32(id), typ: info.Type, name: info.Name}
		ids, _ := info.MapIDs()
		for _, m := range ids {
			bp.maps = append(bp.maps, uint32(m))
		}
		progs = append(progs, bp)
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("programs: %w", err)
	}
	var maps []bpfMap
	err = eachID(ebpf.MapGetNextID, func(id ebpf.MapID) error {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return err
		}
		defer m.Close()
		bm, err := readMap(m)
		maps = append(maps, bm)
		return err
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("maps: %w", err)
	}
	var links []bpfLink
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("link %d: %w", it.ID, err)
		}
		links = append(links, bpfLink{id: uint32(info.ID), prog: uint32(info.Program), typ: info.Type})
	}
	if err := it.Err(); err != nil {
		return nil, nil, nil, err
	}
	return progs, maps, links, nil
}

// eachID calls read with every id that the kernel has of one kind of
// object, as next (ebpf.ProgramGetNextID, ebpf.MapGetNextID) gives them. An
// object freed meanwhile is skipped (read's error is os.ErrNotExist).
func eachID[ID ~uint32](next func(ID) (ID, error), read func(ID) error) error {
	for id := ID(0); ; {
		n, err := next(id)
		if errors.Is(err, os.ErrNotExist) {
			return nil // no more
		}
		if err != nil {
			return fmt.Errorf("next id after %d: %w", id, err)
		}
		id = n
		if err := read(id); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("id %d: %w", id, err)
		}
	}
}

// readMap reads a map's type and name and, for a program array or a map of
// maps, the ids it holds (a lookup from user space gives ids).
func readMap(m *ebpf.Map) (bpfMap, error) {
	info, err := m.Info()
	if err != nil {
		return bpfMap{}, err
	}
	id, _ := info.ID()
	bm := bpfMap{id: uint32(id), typ: info.Type, name: info.Name}
	var into *[]uint32
	switch info.Type {
	case ebpf.ProgramArray:
		into = &bm.progs
	case ebpf.ArrayOfMaps, ebpf.HashOfMaps:
		into = &bm.inner
	default:
		return bm, nil
	}
	var k []byte
	var v uint32
	entries := m.Iterate()
	for entries.Next(&k, &v) {
		*into = append(*into, v)
	}
	return bm, entries.Err()
}

// bpfRefs are, by object id, the pid of a process that holds the object.
type bpfRefs struct{ progs, maps, links map[uint32]int }

// bpfHolders finds, for each object, a process that holds it: through a
// file descriptor (/proc/PID/fdinfo), or through an object that process
// holds (a link holds its program, a program its maps, a program array
// its programs, a map of maps its maps).
func bpfHolders(procs map[int]process, progs []bpfProgram, maps []bpfMap, links []bpfLink) (bpfRefs, error) {
	h := bpfRefs{progs: map[uint32]int{}, maps: map[uint32]int{}, links: map[uint32]int{}}
	for pid := range procs {
		ids, err := bpfids.Held(pid)
		if errors.Is(err, os.ErrNotExist) {
			continue // ended meanwhile
		}
		if err != nil {
			return h, fmt.Errorf("BPF objects of process %d: %w", pid, err)
		}
		for _, l := range []struct {
			ids  []uint32
			into map[uint32]int
		}{{ids.Progs, h.progs}, {ids.Maps, h.maps}, {ids.Links, h.links}} {
			for _, id := range l.ids {
				l.into[id] = pid
			}
		}
	}
	progMaps := map[uint32][]uint32{}
	for _, p := range progs {
		progMaps[p.id] = p.maps
	}
	mapRefs := map[uint32]bpfMap{}
	for _, m := range maps {
		mapRefs[m.id] = m
	}
	for changed := true; changed; {
		changed = false
		hold := func(into map[uint32]int, id uint32, pid int) {
			if into[id] == 0 {
				into[id], changed = pid, true
			}
		}
		for _, l := range links {
			if pid := h.links[l.id]; pid != 0 {
				hold(h.progs, l.prog, pid)
			}
		}
		for id, pid := range h.progs {
			for _, m := range progMaps[id] {
				hold(h.maps, m, pid)
			}
		}
		for id, pid := range h.maps {
			for _, p := range mapRefs[id].progs {
				hold(h.progs, p, pid)
			}
			for _, m := range mapRefs[id].inner {
				hold(h.maps, m, pid)
			}
		}
	}
	return h, nil
}

// attachment is a cgroup a program is attached to, and how.
type attachment struct {
	cgroup string
	how    ebpf.AttachType
	// unit: the cgroup is a systemd unit's or below one.
	unit bool
}

func (a attachment) String() string { return fmt.Sprintf("cgroup %s (%s)", a.cgroup, a.how) }

// cgroupAttachTypes are the attach points of cgroup programs.
var cgroupAttachTypes = []ebpf.AttachType{
	ebpf.AttachCGroupInetIngress, ebpf.AttachCGroupInetEgress, ebpf.AttachCGroupInetSockCreate,
	ebpf.AttachCGroupSockOps, ebpf.AttachCGroupDevice, ebpf.AttachCGroupInet4Bind, ebpf.AttachCGroupInet6Bind,
	ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupInet4PostBind,
	ebpf.AttachCGroupInet6PostBind, ebpf.AttachCGroupUDP4Sendmsg, ebpf.AttachCGroupUDP6Sendmsg,
	ebpf.AttachCGroupSysctl, ebpf.AttachCGroupUDP4Recvmsg, ebpf.AttachCGroupUDP6Recvmsg,
	ebpf.AttachCGroupGetsockopt, ebpf.AttachCGroupSetsockopt, ebpf.AttachCgroupInet4GetPeername,
	ebpf.AttachCgroupInet6GetPeername, ebpf.AttachCgroupInet4GetSockname, ebpf.AttachCgroupInet6GetSockname,
	ebpf.AttachCgroupInetSockRelease,
}

// cgroupAttachments returns where in the cgroup v2 hierarchy each of the
// programs is attached (directly, not inherited). Only asked for programs
// that nothing holds, which are few.
func cgroupAttachments(progs []uint32) (map[uint32][]attachment, error) {
	where := map[uint32][]attachment{}
	if len(progs) == 0 {
		return where, nil
	}
	root, err := cgroupv2.Root()
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || !d.IsDir() {
			return err
		}
		dir, err := os.Open(path)
		if err != nil {
			return nil // removed meanwhile
		}
		defer dir.Close()
		rel, _ := filepath.Rel(root, path)
		unit := slices.ContainsFunc(strings.Split(rel, string(filepath.Separator)), isUnit)
		for _, typ := range cgroupAttachTypes {
			res, err := link.QueryPrograms(link.QueryOptions{Target: int(dir.Fd()), Attach: typ})
			if err != nil {
				continue // an attach type this kernel does not have
			}
			for _, p := range res.Programs {
				if slices.Contains(progs, uint32(p.ID)) {
					where[uint32(p.ID)] = append(where[uint32(p.ID)], attachment{cgroup: path, how: typ, unit: unit})
				}
			}
		}
		return nil
	})
	return where, err
}

// kernelPins are the iterators the kernel puts at the top of every bpf
// filesystem when it is mounted (bpf_preload); they go with the mount.
var kernelPins = []string{"maps.debug", "progs.debug"}

// bpfPins returns the files of every bpf filesystem: pinned programs, maps
// and links, which live until they are removed.
func bpfPins() ([]object, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("bpf"))
	if err != nil {
		return nil, err
	}
	var objs []object
	for _, m := range mounts {
		err := filepath.WalkDir(m.Mountpoint, func(path string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			kernels := filepath.Dir(path) == m.Mountpoint && slices.Contains(kernelPins, d.Name())
			if !d.IsDir() && !kernels {
				objs = append(objs, object{kind: kindBPFPin, id: path, detail: "remove: rm " + path})
			}
			return nil
		})
		if err != nil {
			return objs, fmt.Errorf("bpf filesystem at %s: %w", m.Mountpoint, err)
		}
	}
	return objs, nil
}
