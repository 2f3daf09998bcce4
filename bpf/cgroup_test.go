//go:build linux

package bpf

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

func cgroupRecord(id, parent uint64, path string, pathLen int, truncated bool) netflowCgroupEvent {
	r := netflowCgroupEvent{Type: uint8(RecordCgroup), CgroupId: id, ParentId: parent, PathLen: uint16(pathLen)}
	if truncated {
		r.Truncated = 1
	}
	for i := 0; i < len(path); i++ {
		r.Path[i] = int8(path[i])
	}
	return r
}

func TestDecodeCgroup(t *testing.T) {
	const docker = "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope"
	var c CgroupCreated
	require.NoError(t, c.Decode(encode(t, cgroupRecord(4242, 77, docker, len(docker), false))))
	assert.Equal(t, CgroupCreated{ID: 4242, ParentID: 77, Path: docker, PathLen: len(docker)}, c)

	// The longest path a record holds, and one cut short.
	longest := "/" + strings.Repeat("a", CgroupPathMax-2)
	require.NoError(t, c.Decode(encode(t, cgroupRecord(5, 1, longest, CgroupPathMax-1, false))))
	assert.Equal(t, longest, c.Path)
	assert.False(t, c.Truncated)
	require.NoError(t, c.Decode(encode(t, cgroupRecord(6, 1, longest, 700, true))))
	assert.Equal(t, CgroupCreated{ID: 6, ParentID: 1, PathLen: 700, Truncated: true}, c, "a path cut short names another cgroup: none")

	// Encode is the inverse of Decode.
	want := CgroupCreated{ID: 9, ParentID: 3, Path: "/kubepods.slice/x", PathLen: 17}
	require.NoError(t, c.Decode(want.Encode()))
	assert.Equal(t, want, c)
	assert.Len(t, want.Encode(), CgroupRecordSize)

	full := encode(t, cgroupRecord(7, 1, "", 0, false))
	for i := CgroupRecordSize - CgroupPathMax; i < len(full); i++ {
		full[i] = 'a' // no NUL anywhere in the path
	}
	for _, bad := range []struct {
		name    string
		raw     []byte
		wantErr string
	}{
		{"short", encode(t, cgroupRecord(1, 1, "/a", 2, false))[:CgroupRecordSize-1], "cgroup record of 535 bytes, want 536"},
		{"not a cgroup", encode(t, netflowEvent{Type: 1, Family: 4, EndBy: 1, EndReason: 1}), "cgroup record of 184 bytes, want 536"},
		{"type", encode(t, netflowCgroupEvent{Type: 2, CgroupId: 1}), "record type 2 is not a cgroup"},
		{"no id", encode(t, cgroupRecord(0, 1, "/a", 2, false)), "cgroup record without an id"},
		{"no NUL", full, "cgroup 7: path without its NUL"},
		{"length", encode(t, cgroupRecord(8, 1, "/abc", 3, false)), "cgroup 8: path of 4 bytes, said to be 3"},
		{"truncated but short", encode(t, cgroupRecord(8, 1, "/abc", 600, true)), "cgroup 8: truncated path of 4 bytes, said to be 600"},
		{"truncated but fits", encode(t, cgroupRecord(8, 1, longest, 511, true)), "cgroup 8: truncated path of 511 bytes, said to be 511"},
		{"empty", encode(t, cgroupRecord(8, 1, "", 0, false)), `cgroup 8: path "" is not below the root`},
		{"the root", encode(t, cgroupRecord(8, 1, "/", 1, false)), `cgroup 8: path "/" is not below the root`},
		{"relative", encode(t, cgroupRecord(8, 1, "ab", 2, false)), `cgroup 8: path "ab" is not below the root`},
	} {
		t.Run(bad.name, func(t *testing.T) {
			var c CgroupCreated
			assert.EqualError(t, c.Decode(bad.raw), bad.wantErr)
		})
	}
}

// The record's path size (CGROUP_PATH_MAX) holds the paths that container
// runtimes make, nested ones included.
func TestCgroupPathMaxHoldsRuntimePaths(t *testing.T) {
	const (
		id  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		uid = "0e5f1c2a_3b4d_4e6f_8a9b_0c1d2e3f4a5b"
	)
	for _, tt := range []struct {
		path string
		len  int
	}{
		{"/system.slice/docker-" + id + ".scope", 91},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uid + ".slice/cri-containerd-" + id + ".scope", 191},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uid + ".slice/crio-" + id + ".scope", 183},
		{"/kubepods/burstable/pod" + strings.ReplaceAll(uid, "_", "-") + "/" + id, 124},
		// kind: Kubernetes in a Docker container.
		{"/system.slice/docker-" + id + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + uid + ".slice/cri-containerd-" + id + ".scope", 320},
	} {
		assert.Len(t, tt.path, tt.len, tt.path)
		assert.Less(t, len(tt.path), CgroupPathMax, tt.path)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(path, &st))
	return st.Ino
}

// The cgroup_mkdir program reports every new directory of the cgroup v2
// hierarchy with its id, its parent's and its path from the hierarchy's
// root, measures paths that do not fit, and leaves out cgroup v1
// hierarchies (mounted next to v2 on hybrid hosts).
func TestCgroupMkdirReportsNewCgroups(t *testing.T) {
	testenv.RequireRoot(t)
	root, err := cgroupv2.Root()
	require.NoError(t, err)
	cg := testnet.NewCgroup(t)
	objs, err := testLoad(Options{RingBufferSize: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { objs.Close() })
	for _, u := range objs.Unavailable {
		require.NotEqual(t, CgroupProgram, u.Program, "this kernel loads it: %v", u.Err)
	}
	rd, err := objs.NewReader()
	require.NoError(t, err)
	t.Cleanup(func() { rd.Close() })
	require.NoError(t, objs.Attach(cg.Path))

	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	ctr := cg.Child(t, "docker-"+id+".scope")
	nested := ctr.Child(t, "init")
	// Path lengths around the record's size and past the kernel's buffer.
	long := cg.Child(t, strings.Repeat("l", 250))
	rel := func(c *testnet.Cgroup) string { return strings.TrimPrefix(c.Path, root) }
	fits := long.Child(t, strings.Repeat("f", CgroupPathMax-1-len(rel(long))-1))
	over := long.Child(t, strings.Repeat("o", CgroupPathMax-len(rel(long))-1))
	deep := long.Child(t, strings.Repeat("b", 250)).Child(t, strings.Repeat("c", 250)).Child(t, strings.Repeat("d", 250))
	require.Len(t, rel(fits), CgroupPathMax-1)
	require.Len(t, rel(over), CgroupPathMax)
	require.Greater(t, len(rel(deep)), 1023)
	v1 := cgroupV1Dir(t)

	got := map[uint64]CgroupCreated{}
	for _, raw := range drainRaw(t, rd) {
		require.Equal(t, RecordCgroup, TypeOf(raw), "nothing but cgroups happened in the test cgroup")
		var c CgroupCreated
		require.NoError(t, c.Decode(raw))
		got[c.ID] = c
		if v1 != "" {
			require.NotEqual(t, filepath.Base(v1), filepath.Base(c.Path), "a cgroup v1 hierarchy's cgroup")
		}
	}
	// This test runs in the initial cgroup namespace with the hierarchy's
	// root mounted: the kernel's paths are the mount's.
	for _, c := range []*testnet.Cgroup{ctr, nested, fits} {
		require.Contains(t, got, inode(t, c.Path), c.Path)
		assert.Equal(t, CgroupCreated{
			ID: inode(t, c.Path), ParentID: inode(t, filepath.Dir(c.Path)), Path: rel(c), PathLen: len(rel(c)),
		}, got[inode(t, c.Path)])
	}
	require.Contains(t, got, inode(t, over.Path))
	assert.Equal(t, CgroupCreated{ID: inode(t, over.Path), ParentID: inode(t, long.Path), PathLen: CgroupPathMax, Truncated: true},
		got[inode(t, over.Path)])
	require.Contains(t, got, inode(t, deep.Path))
	assert.Equal(t, 1023, got[inode(t, deep.Path)].PathLen, "the kernel's buffer (TRACE_CGROUP_PATH_LEN) cuts it")
	assert.True(t, got[inode(t, deep.Path)].Truncated)
	t.Logf("%d records; docker path %q (%d bytes)", len(got), got[inode(t, ctr.Path)].Path, len(rel(ctr)))
}

// cgroupV1Dir creates a directory in a cgroup v1 hierarchy, if the host has
// one (a hybrid host), removed after the test; "" if none.
func cgroupV1Dir(t *testing.T) string {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	require.NoError(t, err)
	if len(mounts) == 0 {
		t.Log("no cgroup v1 hierarchy here")
		return ""
	}
	dir := filepath.Join(mounts[0].Mountpoint, "netflowtcpend-test-v1-"+strings.ReplaceAll(t.Name(), "/", "-"))
	require.NoError(t, os.Mkdir(dir, 0o755))
	t.Cleanup(func() { _ = os.Remove(dir) })
	t.Logf("cgroup v1 directory %s", dir)
	return dir
}

// Options.Without leaves an optional program out as a kernel without it
// would, and says so in Unavailable.
func TestWithoutLeavesOptionalProgramsOut(t *testing.T) {
	testenv.RequireRoot(t)
	objs, err := testLoad(Options{RingBufferSize: 1 << 16, Without: []string{CgroupProgram}})
	require.NoError(t, err)
	t.Cleanup(func() { objs.Close() })
	var names []string
	for _, u := range objs.Unavailable {
		names = append(names, u.Program)
		if u.Program == CgroupProgram {
			require.ErrorIs(t, u.Err, errWithout)
			assert.Contains(t, u.Absent, "containers created and removed between two walks of the cgroup tree")
		}
	}
	assert.Contains(t, names, CgroupProgram)
}
