package receiver

import (
	"errors"
	"fmt"
	"os"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
)

// checkCgroupDir says why path is not a directory of a cgroup v2
// filesystem, or returns nil.
func checkCgroupDir(path string) error {
	err := cgroupv2.Check(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s does not exist", path)
	}
	return err
}
