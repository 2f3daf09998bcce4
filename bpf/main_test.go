//go:build linux

package bpf

import (
	"os"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// testWithoutEnv names kernel features and optional programs (comma-
// separated, see Options.Without) that every Load of the tests leaves out,
// as a kernel without them would: NETFLOWTCPEND_TEST_WITHOUT=atomics go
// test ./bpf/ ./receiver/ runs the tests with the object built for kernels
// without atomic operations.
const testWithoutEnv = "NETFLOWTCPEND_TEST_WITHOUT"

// testWithout is what testWithoutEnv names.
var testWithout []string

// testLoad is Load, leaving out what testWithoutEnv names besides
// opts.Without.
func testLoad(opts Options) (*Objects, error) {
	opts.Without = slices.Concat(opts.Without, testWithout)
	return Load(opts)
}

// Every goroutine a test starts ends with it.
func TestMain(m *testing.M) {
	if w := os.Getenv(testWithoutEnv); w != "" {
		testWithout = strings.Split(w, ",")
	}
	goleak.VerifyTestMain(m)
}
