//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testproc"
)

const unprivilegedChildEnv = "NETFLOWTCPEND_UNPRIVILEGED_CHILD"

// TestLoadWithoutPrivilegesNamesTheFix runs this test binary again as user
// nobody and checks that Load says what to do.
func TestLoadWithoutPrivilegesNamesTheFix(t *testing.T) {
	if os.Getenv(unprivilegedChildEnv) != "" {
		_, err := testLoad(Options{})
		fmt.Printf("is-permission-error=%v\n%v\n", errors.Is(err, ErrPermission), err)
		return
	}
	testenv.RequireRoot(t) // needs root to become nobody

	// The go test build directory is private to root: copy the binary.
	self, err := os.Executable()
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "netflowtcpend-unprivileged")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "bpf.test")
	testproc.CopyExecutable(t, self, bin)

	cmd := exec.Command(bin, "-test.run", "^TestLoadWithoutPrivilegesNamesTheFix$")
	cmd.Env = append(os.Environ(), unprivilegedChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Logf("as nobody: %s", out)
	assert.Contains(t, string(out), "is-permission-error=true")
	assert.Contains(t, string(out), "run as root or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (missing CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)")
}

// A refusal names the capability that is missing. Capabilities are per
// thread: each case drops one from the effective set of a thread of its own
// (which ends with its goroutine). e2e's sandbox test measures Load itself
// with each one left out.
func TestPermissionErrorsNameTheMissingCapability(t *testing.T) {
	testenv.RequireRoot(t)
	assert.Nil(t, missingCaps(), "root has all of them")
	for _, c := range neededCaps {
		t.Run(c.name, func(t *testing.T) {
			msg := make(chan string)
			go func() {
				runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
				hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
				var data [2]unix.CapUserData
				if err := unix.Capget(&hdr, &data[0]); err != nil {
					msg <- err.Error()
					return
				}
				for _, drop := range []uint{c.bit, unix.CAP_SYS_ADMIN} {
					data[drop/32].Effective &^= 1 << (drop % 32)
				}
				if err := unix.Capset(&hdr, &data[0]); err != nil {
					msg <- err.Error()
					return
				}
				msg <- wrapPermission(fmt.Errorf("load program: %w"+memlockHint, unix.EPERM)).Error()
			}()
			got := <-msg
			assert.Contains(t, got, "not permitted to load BPF programs")
			assert.Contains(t, got, "(missing "+c.name+")")
			assert.NotContains(t, got, "MEMLOCK", "cilium/ebpf's guess, wrong here")
		})
	}
}

// On a kernel that charges BPF memory to RLIMIT_MEMLOCK (before 5.11), a
// process that may not lift the limit (no CAP_SYS_RESOURCE) goes on with its
// hard limit, and a refusal that no missing capability explains names the
// limit and the fix. This kernel charges the memory cgroup, so the lifting
// is simulated.
func TestMemlockRefusalNamesTheFix(t *testing.T) {
	testenv.RequireRoot(t)
	defer memlockLimit.Store(0)

	refused := func() error { return fmt.Errorf("failed to set memlock rlimit: %w", unix.EPERM) }
	require.NoError(t, raiseMemlockWith(refused), "no CAP_SYS_RESOURCE is not an error yet")
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim))
	assert.Equal(t, lim.Max, lim.Cur, "the soft limit is raised to the hard one")
	assert.Equal(t, max(lim.Cur, 1), memlockLimit.Load())

	err := wrapPermission(fmt.Errorf("map create: %w", unix.EPERM))
	require.ErrorIs(t, err, ErrMemlock)
	assert.Contains(t, err.Error(), "CAP_SYS_RESOURCE")
	assert.Contains(t, err.Error(), "ulimit -l unlimited")
	assert.Contains(t, err.Error(), fmt.Sprintf("limit now %d KiB", max(lim.Cur, 1)/1024))

	failed := func() error { return errors.New("getting original memlock rlimit: bad") }
	assert.ErrorContains(t, raiseMemlockWith(failed), "raise memlock limit: getting original memlock rlimit: bad")
}

const pidNamespaceChildEnv = "NETFLOWTCPEND_PIDNS_CHILD"

// A collector in a PID namespace of its own (a container without hostPID)
// knows its process id only as that namespace counts it; the programs and
// the scan see the kernel's. Load finds the kernel's, so that the
// collector's own sockets are still told apart.
func TestSelfPIDInAPIDNamespaceOfItsOwn(t *testing.T) {
	if os.Getenv(pidNamespaceChildEnv) != "" {
		objs, err := testLoad(Options{IgnoreSelf: true})
		if err != nil {
			fmt.Printf("error %v\n", err)
			return
		}
		fmt.Printf("getpid=%d self=%d\n", os.Getpid(), objs.SelfPID)
		_ = objs.Close()
		return
	}
	testenv.RequireRoot(t)
	objs, err := testLoad(Options{})
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), objs.SelfPID, "in the initial PID namespace, the same")
	require.NoError(t, objs.Close())

	cmd := exec.Command(os.Args[0], "-test.run", "^TestSelfPIDInAPIDNamespaceOfItsOwn$")
	cmd.Env = append(os.Environ(), pidNamespaceChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), fmt.Sprintf("getpid=1 self=%d\n", cmd.Process.Pid), "%s", out)
}
