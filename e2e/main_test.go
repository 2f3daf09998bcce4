//go:build linux

package e2e

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/netflowtcpend/netflowtcpend/internal/loadtest"
)

// Every goroutine a test starts ends with it. The test binary is also the
// churn worker that backpressure tests start in the watched cgroup.
func TestMain(m *testing.M) {
	loadtest.RunWorkerIfAsked()
	goleak.VerifyTestMain(m)
}
