//go:build linux

package main

import (
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func snapshotOf(objs ...object) *snapshot {
	s := &snapshot{objects: map[kind]map[string]object{}}
	s.add(objs...)
	return s
}

func TestCompare(t *testing.T) {
	table := object{kind: kindNftTable, id: "ip nat"}
	cgroup := object{kind: kindCgroup, id: "/sys/fs/cgroup/libpod_parent"}
	othersCgroup := object{kind: kindCgroup, id: "/sys/fs/cgroup/netflowtcpend-test-1-1", notOurs: "named after process 1"}
	heldProgram := object{kind: kindBPFProgram, id: "7", notOurs: "held by process 1 (systemd)"}
	program := object{kind: kindBPFProgram, id: "8"}
	temp := object{kind: kindRunTemp, id: "/tmp/hostcheck-1/otelcol-distribution1"}
	for _, tt := range []struct {
		name                   string
		before, after          *snapshot
		left, removed, ignored []object
	}{
		{name: "nothing", before: snapshotOf(table), after: snapshotOf(table)},
		{name: "new objects are left", before: snapshotOf(), after: snapshotOf(table, cgroup, program, temp),
			left: []object{table, cgroup, program, temp}},
		{name: "new objects that are not the run's are ignored", before: snapshotOf(), after: snapshotOf(othersCgroup, heldProgram),
			ignored: []object{othersCgroup, heldProgram}},
		{name: "what a test could delete counts when gone", before: snapshotOf(table, cgroup), after: snapshotOf(),
			removed: []object{table, cgroup}},
		{name: "BPF objects and temporary files going is no difference", before: snapshotOf(program, temp), after: snapshotOf()},
		{name: "what was not the run's going is no difference", before: snapshotOf(othersCgroup), after: snapshotOf()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := compare(tt.before, tt.after)
			assert.Equal(t, tt.left, d.left)
			assert.Equal(t, tt.removed, d.removed)
			assert.Equal(t, tt.ignored, d.ignored)
			assert.Equal(t, len(tt.left)+len(tt.removed) == 0, d.empty())
		})
	}
}

func TestReportNamesWhatWasLeft(t *testing.T) {
	d := compare(snapshotOf(object{kind: kindLink, id: "eth0 index 2"}),
		snapshotOf(object{kind: kindNftTable, id: "ip nat", detail: "remove: nft delete table ip nat"}))
	d.processes = []process{{pid: 42, cmdline: "dnsmasq --keep-in-foreground"}}
	assert.Equal(t, `  processes still running after it ended (now ended by hostcheck):
    process 42 (dnsmasq --keep-in-foreground)
  left behind:
    nftables table ip nat (remove: nft delete table ip nat)
  gone (the host had it before):
    network link eth0 index 2
`, d.String())
	assert.Empty(t, compare(snapshotOf(), snapshotOf()).String())
}

func TestPidInName(t *testing.T) {
	for name, pid := range map[string]string{
		"netflowtcpend-test-123-4":       "123",
		"netflowtcpend-e2e-55":           "55",
		"netflowtcpend-podman-77":        "77",
		"netflowtcpend-runc-8":           "8",
		"netflowtcpend-test-v1-TestFoo":  "",
		"netflowtcpend-test-v1-Test-1":   "",
		"libpod_parent":                  "",
		"netflowtcpend-hostcheck-test-9": "9",
	} {
		m := pidInName.FindStringSubmatch(name)
		if pid == "" {
			assert.Nil(t, m, name)
			continue
		}
		require.NotNil(t, m, name)
		assert.Equal(t, pid, m[1], name)
	}
}

func TestNotOursByName(t *testing.T) {
	procs, err := readProcesses()
	require.NoError(t, err)
	h := &host{self: os.Getpid()}
	notOurs := h.notOursByName(procs)
	assert.Contains(t, notOurs("netflowtcpend-test-1-1"), "named after process 1", "pid 1 is alive and not below this process")
	assert.Empty(t, notOurs("netflowtcpend-test-"+strconv.Itoa(os.Getpid())+"-1"), "this process's own")
	assert.Empty(t, notOurs("libpod_parent"))
	// A pid that is not alive: the run's leftover, whoever made it.
	dead := 1 << 22
	for procs[dead].pid != 0 {
		dead++
	}
	assert.Empty(t, notOurs("netflowtcpend-test-"+strconv.Itoa(dead)+"-1"))
}

func TestReadProcess(t *testing.T) {
	p, err := readProcess(os.Getpid())
	require.NoError(t, err)
	assert.Equal(t, os.Getppid(), p.ppid)
	assert.Equal(t, "hostcheck.test", p.comm)
	assert.Contains(t, "RSD", string(p.state), "the main thread's state: running or sleeping")
	procs, err := readProcesses()
	require.NoError(t, err)
	assert.True(t, isBelow(procs, os.Getpid(), os.Getppid()))
	assert.False(t, isBelow(procs, os.Getppid(), os.Getpid()))
}

func TestIsUnit(t *testing.T) {
	for name, unit := range map[string]bool{
		"system.slice": true, "init.scope": true, "apt-daily.service": true, "dev-hugepages.mount": true,
		"libpod_parent": false, "netflowtcpend-test-1-2": false, "process_api": false,
	} {
		assert.Equal(t, unit, isUnit(name), name)
	}
}
