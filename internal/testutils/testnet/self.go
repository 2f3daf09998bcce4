//go:build linux

package testnet

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// OwnCgroup returns the directory of this process's cgroup v2 under root
// (the mount point cgroupv2.Root returns): tests and load generators move
// themselves into a child cgroup and back (MoveSelf).
func OwnCgroup(root string) (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rel, ok := strings.CutPrefix(s.Text(), "0::"); ok {
			return filepath.Join(root, rel), nil
		}
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup v2 line in /proc/self/cgroup")
}

// MoveSelf moves this whole process (all its threads) into the cgroup
// directory dir.
func MoveSelf(dir string) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
}
