package netflowtcpend

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
)

// Config is the receiver's configuration. Every key is optional.
type Config struct {
	// CgroupPath is a directory of a cgroup v2 filesystem; sockets created
	// in that cgroup or below it are watched. Empty: the root of the cgroup
	// v2 mount, found at start.
	CgroupPath string `mapstructure:"cgroup_path"`

	// RingBufferSize is the size in bytes of the kernel ring buffer that
	// holds records until the receiver reads them.
	RingBufferSize int `mapstructure:"ring_buffer_size"`

	// MaxBatchSize is the most records passed to the next consumer at once.
	MaxBatchSize int `mapstructure:"max_batch_size"`

	// FlushInterval is the longest a record waits in a batch.
	FlushInterval time.Duration `mapstructure:"flush_interval"`

	// prevent unkeyed literal initialization
	_ struct{}
}

const (
	minRingBufferSize = 1 << 16
	maxRingBufferSize = 1 << 30
	maxMaxBatchSize   = 1 << 20
)

func createDefaultConfig() *Config {
	return &Config{
		RingBufferSize: bpf.DefaultRingBufferSize,
		MaxBatchSize:   1024,
		FlushInterval:  200 * time.Millisecond,
	}
}

// Validate checks the configuration; each error names the key and the fix.
func (c *Config) Validate() error {
	var errs []error
	if c.CgroupPath != "" {
		if !filepath.IsAbs(c.CgroupPath) {
			errs = append(errs, fmt.Errorf("cgroup_path %q must be an absolute path", c.CgroupPath))
		} else if err := cgroupv2.Check(c.CgroupPath); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				err = fmt.Errorf("%s does not exist", c.CgroupPath)
			}
			errs = append(errs, fmt.Errorf("cgroup_path: %w; use a cgroup v2 directory or leave it empty for the root", err))
		}
	}
	if s := c.RingBufferSize; s < minRingBufferSize || s > maxRingBufferSize || s&(s-1) != 0 {
		errs = append(errs, fmt.Errorf("ring_buffer_size %d must be a power of two from %d (64 KiB) to %d (1 GiB)",
			s, minRingBufferSize, maxRingBufferSize))
	}
	if c.MaxBatchSize < 1 || c.MaxBatchSize > maxMaxBatchSize {
		errs = append(errs, fmt.Errorf("max_batch_size %d must be from 1 to %d", c.MaxBatchSize, maxMaxBatchSize))
	}
	if c.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("flush_interval %v must be positive, e.g. 200ms", c.FlushInterval))
	}
	return errors.Join(errs...)
}
