//go:build linux

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
)

// unitSuffixes end the names of the systemd units that have cgroups.
// systemd makes and removes them as timers fire and users log in; tests
// never make one, so they are not compared.
var unitSuffixes = []string{".slice", ".scope", ".service", ".socket", ".mount", ".swap"}

func isUnit(name string) bool {
	for _, s := range unitSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// cgroups returns every cgroup below the cgroup v2 root, and the top level
// of each cgroup v1 hierarchy (below that, a v1 cgroup belongs to whoever
// made its parent: on this kind of machine, the machinery that runs
// commands makes and removes memory cgroups of its own there), except
// systemd units and what they contain. notOurs says why a cgroup with
// a given top-level name is not the run's ("" if it is).
func cgroups(notOurs func(name string) string) ([]object, error) {
	root, err := cgroupv2.Root()
	if err != nil {
		return nil, err
	}
	var objs []object
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile
		}
		if err != nil {
			return err
		}
		if !d.IsDir() || path == root {
			return nil
		}
		if isUnit(d.Name()) {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(root, path)
		top, _, _ := strings.Cut(rel, string(filepath.Separator))
		objs = append(objs, object{kind: kindCgroup, id: path, detail: cgroupDetail(path), notOurs: notOurs(top)})
		return nil
	})
	if err != nil {
		return objs, fmt.Errorf("cgroup v2 at %s: %w", root, err)
	}
	v1, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return objs, err
	}
	for _, m := range v1 {
		entries, err := os.ReadDir(m.Mountpoint)
		if err != nil {
			return objs, fmt.Errorf("cgroup v1 at %s: %w", m.Mountpoint, err)
		}
		for _, e := range entries {
			if e.IsDir() && !isUnit(e.Name()) {
				path := filepath.Join(m.Mountpoint, e.Name())
				objs = append(objs, object{kind: kindCgroup, id: path, detail: "cgroup v1; " + cgroupDetail(path), notOurs: notOurs(e.Name())})
			}
		}
	}
	return objs, nil
}

// cgroupDetail names the processes in the cgroup, or how to remove it.
func cgroupDetail(path string) string {
	b, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
	if pids := strings.Fields(string(b)); len(pids) > 0 {
		return "holds processes " + strings.Join(pids, " ")
	}
	return "remove: rmdir " + path
}
