//go:build linux

package receiver

import (
	"os"
	"strings"
	"testing"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/kubeapi"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testproc"
)

// Some tests need sockets owned by another process than the test: the test
// binary runs again as a helper, under another name, in the monitored cgroup
// (and, if asked, in another network namespace), and talks over its
// standard input and output.

// helperName is the helper's executable name, as records should give it.
const helperName = "nfhelper"

// testWithout: kernel features and optional programs every receiver of the
// tests leaves out (bpf.Options.Without), from NETFLOWTCPEND_TEST_WITHOUT
// (comma-separated): NETFLOWTCPEND_TEST_WITHOUT=atomics runs the tests with
// the object built for kernels without atomic operations.
var testWithout []string

func TestMain(m *testing.M) {
	if w := os.Getenv("NETFLOWTCPEND_TEST_WITHOUT"); w != "" {
		testWithout = strings.Split(w, ",")
	}
	testproc.Main()
	// The read loop and everything Start begins must end with Shutdown.
	os.Exit(kubeapi.RunTests(m))
}

// helper is a running helper process (internal/testutils/testproc).
type helper = testproc.Proc

// helperBinary copies the test binary to a file named helperName.
func helperBinary(t *testing.T) string {
	t.Helper()
	return testproc.Binary(t, t.TempDir(), helperName)
}

// startHelper starts a helper in cgroup cg (nil: the test's cgroup) and
// network namespace ns (nil: the test's), handing it extra files from fd 3.
func startHelper(t *testing.T, bin string, cg *testnet.Cgroup, ns *testnet.Netns, mode, addr string, extra ...*os.File) *helper {
	t.Helper()
	var args []string
	if addr != "" {
		args = append(args, addr)
	}
	return testproc.Start(t, bin, testproc.Options{Cgroup: cg, Netns: ns, Files: extra}, mode, args...)
}
