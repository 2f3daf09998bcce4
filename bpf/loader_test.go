//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testenv"
)

const unprivilegedChildEnv = "NETFLOWTCPEND_UNPRIVILEGED_CHILD"

// TestLoadWithoutPrivilegesNamesTheFix runs this test binary again as user
// nobody and checks that Load says what to do.
func TestLoadWithoutPrivilegesNamesTheFix(t *testing.T) {
	if os.Getenv(unprivilegedChildEnv) != "" {
		_, err := Load(Options{})
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
	copyFile(t, self, bin)

	cmd := exec.Command(bin, "-test.run", "^TestLoadWithoutPrivilegesNamesTheFix$")
	cmd.Env = append(os.Environ(), unprivilegedChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Logf("as nobody: %s", out)
	assert.Contains(t, string(out), "is-permission-error=true")
	assert.Contains(t, string(out), "run as root or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON")
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

const pidNamespaceChildEnv = "NETFLOWTCPEND_PIDNS_CHILD"

// A collector in a PID namespace of its own (a container without hostPID)
// knows its process id only as that namespace counts it; the programs and
// the scan see the kernel's. Load finds the kernel's, so that the
// collector's own sockets are still told apart.
func TestSelfPIDInAPIDNamespaceOfItsOwn(t *testing.T) {
	if os.Getenv(pidNamespaceChildEnv) != "" {
		objs, err := Load(Options{IgnoreSelf: true})
		if err != nil {
			fmt.Printf("error %v\n", err)
			return
		}
		fmt.Printf("getpid=%d self=%d\n", os.Getpid(), objs.SelfPID)
		_ = objs.Close()
		return
	}
	testenv.RequireRoot(t)
	objs, err := Load(Options{})
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
