package receiver

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"
)

// Config is the receiver's configuration, from the collector's YAML to the
// runtime: confmap decodes it (text fields through their UnmarshalText),
// Validate checks it, and the runtime reads it as it is. Every key is
// optional; DefaultConfig gives the defaults.
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

	// DNS configures the cache that fills the domain attributes.
	DNS DNSConfig `mapstructure:"dns"`

	// Filters choose which connection ends become records.
	Filters FiltersConfig `mapstructure:"filters"`

	// Attributes choose the optional attributes of records.
	Attributes AttributesConfig `mapstructure:"attributes"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// DNSConfig configures the DNS cache built from the DNS answers that
// monitored sockets receive.
type DNSConfig struct {
	// Enabled turns DNS capture and the domain attributes on.
	Enabled bool `mapstructure:"enabled"`
	// MaxAddresses bounds the addresses in the cache (least recently used
	// evicted first).
	MaxAddresses int `mapstructure:"max_addresses"`
	// MaxNames caps the names in one domains attribute.
	MaxNames int `mapstructure:"max_names"`
	// PayloadLimit is the most bytes of one DNS message the kernel copies.
	PayloadLimit int `mapstructure:"payload_limit"`
	// MinTTL is the shortest time an answer stays valid.
	MinTTL time.Duration `mapstructure:"min_ttl"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// FiltersConfig chooses records: a record is kept when it matches every
// include list that is set, and no exclude list.
type FiltersConfig struct {
	Include FilterConfig `mapstructure:"include"`
	Exclude FilterConfig `mapstructure:"exclude"`
	// ExcludeSelf drops the collector's own connections (its exports, its
	// receivers' clients) and DNS lookups.
	ExcludeSelf bool `mapstructure:"exclude_self"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// FilterConfig is one set of criteria; a connection matches a list when
// either of its sides does.
type FilterConfig struct {
	Ports      []int          `mapstructure:"ports"`      // either port
	CIDRs      []netip.Prefix `mapstructure:"cidrs"`      // either address, e.g. 10.0.0.0/8, 2001:db8::/32
	Directions []Direction    `mapstructure:"directions"` // incoming, outgoing, unknown
	Cgroups    []string       `mapstructure:"cgroups"`    // cgroup v2 directories, and everything below them

	// prevent unkeyed literal initialization
	_ struct{}
}

// Direction is a local socket's role in its connection. The values are
// those of the kernel programs' enum direction (a test checks it), so that
// a record's direction compares without a conversion table.
type Direction uint8

// Directions, as the README defines them.
const (
	DirectionUnknown  Direction = 0 // the receiver could not tell (see the README)
	DirectionIncoming Direction = 1 // accepted from a listener
	DirectionOutgoing Direction = 2 // the socket sent the SYN
)

var directionNames = [...]string{DirectionUnknown: "unknown", DirectionIncoming: "incoming", DirectionOutgoing: "outgoing"}

func (d Direction) String() string {
	if int(d) < len(directionNames) {
		return directionNames[d]
	}
	return "unknown"
}

// UnmarshalText accepts incoming, outgoing and unknown.
func (d *Direction) UnmarshalText(text []byte) error {
	for i, name := range directionNames {
		if string(text) == name {
			*d = Direction(i)
			return nil
		}
	}
	return fmt.Errorf("%q is not incoming, outgoing or unknown", text)
}

// MarshalText writes the name UnmarshalText reads.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// DefaultRingBufferSize is the default ring_buffer_size: room for about
// 45,000 connection-end records of 184 bytes.
const DefaultRingBufferSize = 8 << 20

// MaxDNSPayload is the largest dns.payload_limit: DNS_PAYLOAD_MAX, the
// per-CPU scratch buffer of the kernel programs (a test checks it).
const MaxDNSPayload = 8192

const (
	minRingBufferSize = 1 << 16
	maxRingBufferSize = 1 << 30
	maxMaxBatchSize   = 1 << 20
	maxDNSAddresses   = 1 << 24
	maxDNSNames       = 1000
	minDNSPayload     = 512 // the classic UDP DNS limit
)

// DefaultConfig returns the configuration of an empty YAML block.
func DefaultConfig() *Config {
	return &Config{
		RingBufferSize: DefaultRingBufferSize,
		MaxBatchSize:   1024,
		FlushInterval:  200 * time.Millisecond,
		DNS: DNSConfig{
			Enabled:      true,
			MaxAddresses: 65536,
			MaxNames:     10,
			PayloadLimit: 4096, // EDNS0 answers; 1232 is the common UDP size
			MinTTL:       5 * time.Second,
		},
		Filters: FiltersConfig{ExcludeSelf: true},
	}
}

// Validate checks the configuration; each error names the key and the fix.
func (c *Config) Validate() error {
	var errs []error
	if c.CgroupPath != "" {
		if !filepath.IsAbs(c.CgroupPath) {
			errs = append(errs, fmt.Errorf("cgroup_path %q must be an absolute path", c.CgroupPath))
		} else if err := checkCgroupDir(c.CgroupPath); err != nil {
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
	if d := c.DNS; d.Enabled {
		if d.MaxAddresses < 1 || d.MaxAddresses > maxDNSAddresses {
			errs = append(errs, fmt.Errorf("dns.max_addresses %d must be from 1 to %d", d.MaxAddresses, maxDNSAddresses))
		}
		if d.MaxNames < 1 || d.MaxNames > maxDNSNames {
			errs = append(errs, fmt.Errorf("dns.max_names %d must be from 1 to %d", d.MaxNames, maxDNSNames))
		}
		if d.PayloadLimit < minDNSPayload || d.PayloadLimit > MaxDNSPayload {
			errs = append(errs, fmt.Errorf("dns.payload_limit %d must be from %d to %d bytes", d.PayloadLimit, minDNSPayload, MaxDNSPayload))
		}
		if d.MinTTL < 0 {
			errs = append(errs, fmt.Errorf("dns.min_ttl %v must not be negative", d.MinTTL))
		}
	}
	errs = append(errs, c.Filters.Include.validate("filters.include")...)
	errs = append(errs, c.Filters.Exclude.validate("filters.exclude")...)
	errs = append(errs, c.Attributes.validate()...)
	return errors.Join(errs...)
}

func (f FilterConfig) validate(key string) []error {
	var errs []error
	for _, p := range f.Ports {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s.ports: %d is not a port (1 to 65535)", key, p))
		}
	}
	for _, p := range f.CIDRs {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("%s.cidrs: an empty entry is not an address range like 10.0.0.0/8 or 2001:db8::/32", key))
		}
	}
	for _, d := range f.Directions {
		if d > DirectionOutgoing {
			errs = append(errs, fmt.Errorf("%s.directions: %d is not incoming, outgoing or unknown", key, d))
		}
	}
	for _, c := range f.Cgroups {
		if !filepath.IsAbs(c) {
			errs = append(errs, fmt.Errorf("%s.cgroups: %q must be an absolute path", key, c))
		} else if err := checkCgroupDir(c); err != nil {
			errs = append(errs, fmt.Errorf("%s.cgroups: %w", key, err))
		}
	}
	return errs
}
