package netflowtcpend

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	flowreceiver "github.com/netflowtcpend/netflowtcpend/receiver"
)

func TestValidateAcceptsCgroupV2Directories(t *testing.T) {
	root, err := cgroupv2.Root()
	if err != nil {
		t.Skipf("no cgroup v2 mount here: %v", err)
	}
	cfg := flowreceiver.DefaultConfig()
	cfg.CgroupPath = root
	require.NoError(t, cfg.Validate())

	// A file inside the cgroup filesystem is not a cgroup.
	cfg.CgroupPath = filepath.Join(root, "cgroup.procs")
	assert.ErrorContains(t, cfg.Validate(), "is a file")
}
