//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Why the kernel refuses to load or attach: missing capabilities, a memlock
// limit on kernels that charge BPF memory to it, or a missing feature.

var (
	// ErrPermission means the process may not load or attach BPF programs.
	ErrPermission = errors.New("not permitted to load BPF programs: run as root or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON")
	// ErrUnsupportedKernel means the running kernel lacks a feature the
	// programs need.
	ErrUnsupportedKernel = errors.New("kernel lacks a required BPF feature")
	// ErrMemlock means the kernel charges BPF memory to RLIMIT_MEMLOCK
	// (before Linux 5.11, or a vendor kernel that kept that accounting) and
	// the process could not lift the limit.
	ErrMemlock = errors.New("this kernel charges BPF memory to RLIMIT_MEMLOCK, and the process may not raise it: " +
		"give it CAP_SYS_RESOURCE, or a memlock limit the BPF maps fit in (ulimit -l unlimited; " +
		"a container's is its runtime's, e.g. --ulimit memlock=-1)")
)

func loadError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		// The last lines of the log say why.
		//nolint:errorlint // %+v prints the verifier's whole log; callers test for ErrUnsupportedKernel
		return fmt.Errorf("load bpf objects: %w (verifier: %+v)", ErrUnsupportedKernel, ve)
	}
	return fmt.Errorf("load bpf objects: %w", wrapPermission(err))
}

// memlockLimit is, when the kernel charges BPF memory to RLIMIT_MEMLOCK and
// the limit could not be lifted, the limit in bytes (then raised to its hard
// limit); 0 otherwise. wrapPermission blames it for a refusal that missing
// capabilities do not explain.
var memlockLimit atomic.Uint64

// raiseMemlock lets the kernel charge BPF memory to this process on kernels
// that count it against RLIMIT_MEMLOCK. Lifting the limit past its hard
// limit needs CAP_SYS_RESOURCE; without it, the soft limit goes up to the
// hard one, which the runtime may have set high enough, and loading goes
// on: if the maps do not fit, the error says so (ErrMemlock).
func raiseMemlock() error { return raiseMemlockWith(rlimit.RemoveMemlock) }

// raiseMemlockWith is raiseMemlock with remove in place of
// rlimit.RemoveMemlock, which lifts RLIMIT_MEMLOCK where the kernel charges
// BPF memory to it and does nothing on kernels that charge the memory
// cgroup (5.11 and later).
func raiseMemlockWith(remove func() error) error {
	err := remove()
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("raise memlock limit: %w", err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return fmt.Errorf("read memlock limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim) // lowering nothing, never refused
	}
	memlockLimit.Store(max(lim.Cur, 1))
	return nil
}

// effectiveCaps returns the effective capability set of the calling thread.
func effectiveCaps() (uint64, bool) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, false
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, true
}

// hasPerfmon reports whether the process has CAP_PERFMON or CAP_SYS_ADMIN,
// which also grants it.
func hasPerfmon() bool {
	eff, ok := effectiveCaps()
	if !ok {
		return true // cannot tell: do not blame permissions
	}
	return eff&(1<<unix.CAP_PERFMON|1<<unix.CAP_SYS_ADMIN) != 0
}

// neededCaps are the capabilities the collector needs (README, "Capabilities").
var neededCaps = []struct {
	bit  uint
	name string
}{{unix.CAP_BPF, "CAP_BPF"}, {unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_PERFMON, "CAP_PERFMON"}}

// missingCaps names the needed capabilities that the effective set lacks.
// CAP_SYS_ADMIN stands for all three, as the kernel counts it
// (bpf_capable, bpf_net_capable, perfmon_capable).
func missingCaps() []string {
	eff, ok := effectiveCaps()
	if !ok || eff&(1<<unix.CAP_SYS_ADMIN) != 0 {
		return nil
	}
	var out []string
	for _, c := range neededCaps {
		if eff&(1<<c.bit) == 0 {
			out = append(out, c.name)
		}
	}
	return out
}

// memlockHint is what cilium/ebpf adds to every EPERM from loading a
// program or creating a map. Here it only misleads: raiseMemlock lifted the
// limit, or wrapPermission blames it itself (ErrMemlock).
const memlockHint = " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)"

// withoutMemlockHint is an error without memlockHint in its text.
type withoutMemlockHint struct{ error }

func (e withoutMemlockHint) Error() string {
	return strings.ReplaceAll(e.error.Error(), memlockHint, "")
}
func (e withoutMemlockHint) Unwrap() error { return e.error }

// wrapPermission says why the kernel refused: the capabilities that are
// missing, or else a memlock limit that could not be lifted.
func wrapPermission(err error) error {
	if !errors.Is(err, os.ErrPermission) {
		return err
	}
	err = withoutMemlockHint{err}
	if missing := missingCaps(); len(missing) > 0 {
		return fmt.Errorf("%w (missing %s): %w", ErrPermission, strings.Join(missing, ", "), err)
	}
	if limit := memlockLimit.Load(); limit != 0 {
		return fmt.Errorf("%w (limit now %d KiB): %w", ErrMemlock, limit/1024, err)
	}
	return fmt.Errorf("%w: %w", ErrPermission, err)
}
