//go:build linux

package e2e

import (
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"go.uber.org/goleak"

	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testproc"
	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

// chargesMemlock: this kernel charges BPF memory to RLIMIT_MEMLOCK (before
// Linux 5.11) rather than to the memory cgroup, as TestMain found out.
var chargesMemlock bool

// Every goroutine a test starts ends with it. Run as a helper (internal/testutils/testproc),
// the test binary is a helper process instead; run as a
// loadtest worker, it is the churn that the backpressure tests start in the
// watched cgroup.
func TestMain(m *testing.M) {
	loadtest.RunWorkerIfAsked()
	testproc.Main()
	chargesMemlock = detectMemlockCharging()
	cleanUpOnInterrupt()
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/netflowtcpend/netflowtcpend/test/e2e.cleanUpOnInterrupt.func1"))
}

// detectMemlockCharging creates a map with RLIMIT_MEMLOCK at 0, as
// cilium/ebpf's rlimit package does: only a kernel that charges the memory
// cgroup allows it. Run before the tests start, since the limit is the
// process's.
func detectMemlockCharging() bool {
	var old unix.Rlimit
	if unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &old) != nil || os.Geteuid() != 0 {
		return false
	}
	if unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 0, Max: old.Max}, nil) != nil {
		return false
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	_ = unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &old, nil)
	if err == nil {
		m.Close()
		return false
	}
	return true
}
