//go:build linux

package e2e

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/netflowtcpend/netflowtcpend/internal/loadtest"
)

// Every goroutine a test starts ends with it. Run with helperEnv set, the
// test binary is a helper process instead (see sandboxHelper); run as a
// loadtest worker, it is the churn that the backpressure tests start in the
// watched cgroup.
func TestMain(m *testing.M) {
	loadtest.RunWorkerIfAsked()
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode, os.Args[2:]); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
