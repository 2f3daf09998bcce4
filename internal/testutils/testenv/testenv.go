// Package testenv holds the rules tests follow about their environment.
package testenv

import (
	"os"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where every test
// must run: a missing privilege there is a failure, never a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Emulated reports whether the tests run in a kernel-matrix guest that
// QEMU emulates (TCG, set by test/vm/run.sh): 10 to 50 times slower than
// the hardware, so tests that repeat work only to catch what accumulates
// (leaks across start/shutdown cycles) repeat less there. Whatever they
// check is checked all the same.
func Emulated() bool { return os.Getenv("VM_ACCEL") == "tcg" }

// RequireRoot skips the test when the process is not root, except in CI,
// where it fails it. With -short (make unit) it skips privileged tests even
// for root: that run is the quick edit-test loop of unit tests.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping under -short: this test loads BPF programs (make test runs it)")
	}
	if os.Geteuid() == 0 {
		return
	}
	if InCI() {
		t.Fatal("this test loads BPF programs and needs root; CI=true, so not skipping")
	}
	t.Skip("skipping: needs root to load BPF programs (run make test as root)")
}
