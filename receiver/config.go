package receiver

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/config/configoptional"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// errNotExist is what checkCgroupDir wraps for a path that does not exist.
var errNotExist = errors.New("does not exist")

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

	// TLS configures the server name taken from TLS ClientHellos.
	TLS TLSConfig `mapstructure:"tls"`

	// Filters choose which connection ends become records.
	Filters FiltersConfig `mapstructure:"filters"`

	// Attributes choose the optional attributes of records.
	Attributes AttributesConfig `mapstructure:"attributes"`

	// NAT: how records name translations (docs/nat.md).
	NAT NATConfig `mapstructure:"nat"`
	// Kubernetes, when the block is set, names peers from the API server
	// (the netflow.peer.k8s.* attributes).
	Kubernetes configoptional.Optional[KubernetesConfig] `mapstructure:"kubernetes"`
	// Metrics configures the metrics of a metrics pipeline.
	Metrics MetricsConfig `mapstructure:"metrics"`

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

// NATConfig chooses how records name what NAT made of a connection. The
// address attributes are always the socket's own view; the kernel programs
// name this host's translation where the socket's own packets show it.
type NATConfig struct {
	// Conntrack asks the connection tracking of the collector's network
	// namespace (the node's, with hostNetwork) for the records whose
	// translation the socket's packets cannot show: those of sockets in
	// other namespaces (a pod's connection to a Service, DNATed on the
	// node), and accepted or pre-existing sockets whose end came in. One
	// netlink request per such record (docs/nat.md gives its cost). Needs
	// CAP_NET_ADMIN, which the programs need anyway.
	Conntrack bool `mapstructure:"conntrack"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// TLSConfig configures netflow.tls.server_name: the server name (SNI) that
// a connection's TLS client sent in its ClientHello (docs/tls.md).
type TLSConfig struct {
	// Enabled turns the copy of connections' first bytes that start like
	// a ClientHello, and the attribute, on.
	Enabled bool `mapstructure:"enabled"`

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
	Ports      []int           `mapstructure:"ports"`      // either port
	CIDRs      []netip.Prefix  `mapstructure:"cidrs"`      // either address, e.g. 10.0.0.0/8, 2001:db8::/32
	Directions []bpf.Direction `mapstructure:"directions"` // incoming, outgoing, unknown
	Cgroups    []string        `mapstructure:"cgroups"`    // cgroup v2 directories, and everything below them

	// prevent unkeyed literal initialization
	_ struct{}
}

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
		RingBufferSize: bpf.DefaultRingBufferSize,
		MaxBatchSize:   1024,
		FlushInterval:  200 * time.Millisecond,
		DNS: DNSConfig{
			Enabled:      true,
			MaxAddresses: 65536,
			MaxNames:     10,
			PayloadLimit: 4096, // EDNS0 answers; 1232 is the common UDP size
			MinTTL:       5 * time.Second,
		},
		TLS:     TLSConfig{Enabled: true},
		Filters: FiltersConfig{ExcludeSelf: true},
		// Off; a kubernetes: block, even empty, turns it on with these.
		Kubernetes: configoptional.Default(defaultKubernetesConfig()),
		Metrics:    defaultMetricsConfig(),
	}
}

// Validate checks the configuration; each error names the key and the fix.
func (c *Config) Validate() error {
	var errs []error
	if c.CgroupPath != "" {
		if !filepath.IsAbs(c.CgroupPath) {
			errs = append(errs, fmt.Errorf("cgroup_path %q must be an absolute path", c.CgroupPath))
		} else if err := cgroupPathError(c.CgroupPath); err != nil {
			errs = append(errs, err)
		}
	}
	if s := c.RingBufferSize; s < minRingBufferSize || s > maxRingBufferSize || s&(s-1) != 0 {
		errs = append(errs, fmt.Errorf("ring_buffer_size %d must be a power of two from %d (64 KiB) to %d (1 GiB)",
			s, minRingBufferSize, maxRingBufferSize))
	}
	if c.MaxBatchSize < 1 || c.MaxBatchSize > maxMaxBatchSize {
		errs = append(errs, fmt.Errorf("max_batch_size %d must be from 1 to %d", c.MaxBatchSize, maxMaxBatchSize))
	}
	switch {
	case c.FlushInterval <= 0:
		errs = append(errs, fmt.Errorf("flush_interval %v must be positive, e.g. 200ms", c.FlushInterval))
	case c.FlushInterval < minFlushInterval:
		errs = append(errs, fmt.Errorf("flush_interval %v is shorter than %v; write a duration with its unit, e.g. 200ms (a bare number is nanoseconds)",
			c.FlushInterval, minFlushInterval))
	}
	if d := c.DNS; d.Enabled {
		if d.MaxAddresses < 1 || d.MaxAddresses > maxDNSAddresses {
			errs = append(errs, fmt.Errorf("dns.max_addresses %d must be from 1 to %d", d.MaxAddresses, maxDNSAddresses))
		}
		if d.MaxNames < 1 || d.MaxNames > maxDNSNames {
			errs = append(errs, fmt.Errorf("dns.max_names %d must be from 1 to %d", d.MaxNames, maxDNSNames))
		}
		if d.PayloadLimit < minDNSPayload || d.PayloadLimit > bpf.MaxDNSPayload {
			errs = append(errs, fmt.Errorf("dns.payload_limit %d must be from %d to %d bytes", d.PayloadLimit, minDNSPayload, bpf.MaxDNSPayload))
		}
		switch {
		case d.MinTTL < 0:
			errs = append(errs, fmt.Errorf("dns.min_ttl %v must not be negative", d.MinTTL))
		case d.MinTTL > 0 && d.MinTTL < time.Second:
			errs = append(errs, fmt.Errorf("dns.min_ttl %v: DNS TTLs are whole seconds; use 0s or at least 1s, with the unit (a bare number is nanoseconds)", d.MinTTL))
		}
	}
	errs = append(errs, c.Filters.Include.validate("filters.include")...)
	errs = append(errs, c.Filters.Exclude.validate("filters.exclude")...)
	errs = append(errs, c.Filters.contradictions(c.watched())...)
	errs = append(errs, c.Attributes.validate()...)
	if k := c.Kubernetes.Get(); k != nil {
		errs = append(errs, k.validate()...)
	}
	errs = append(errs, c.k8sMetricsAttributes()...)
	errs = append(errs, c.Metrics.validate(c.Attributes.Exclude)...)
	return errors.Join(errs...)
}

// minFlushInterval is the shortest flush_interval: the read loop wakes up
// that often.
const minFlushInterval = time.Millisecond

// cgroupPathError says what is wrong with cgroup_path, an absolute path,
// and how to fix it; nil if nothing is. Start asks again: the cgroup may
// have gone since the configuration was validated.
func cgroupPathError(path string) error {
	err := checkCgroupDir(path)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNotExist):
		return fmt.Errorf("cgroup_path: %w; create it first (the cgroup of a systemd unit or a container exists only while it runs), "+
			"use another cgroup v2 directory, or leave cgroup_path empty for the root", err)
	default:
		return fmt.Errorf("cgroup_path: %w; use a cgroup v2 directory or leave it empty for the root", err)
	}
}

// watched is the cgroup v2 directory whose sockets are watched, cleaned;
// "" when it is not known here.
func (c *Config) watched() string {
	if c.CgroupPath == "" {
		return cgroupRoot()
	}
	if !filepath.IsAbs(c.CgroupPath) || checkCgroupDir(c.CgroupPath) != nil {
		return ""
	}
	return filepath.Clean(c.CgroupPath)
}

func (f FilterConfig) validate(key string) []error {
	var errs []error
	for _, p := range f.Ports {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s.ports: %d is not a port (1 to 65535)", key, p))
		}
	}
	for _, p := range f.CIDRs {
		switch {
		case !p.IsValid():
			errs = append(errs, fmt.Errorf("%s.cidrs: an empty entry is not an address range like 10.0.0.0/8 or 2001:db8::/32", key))
		case p.Addr().Is4In6():
			// Records carry IPv4 traffic with IPv4 addresses, also that of
			// dual-stack sockets: a mapped range matches nothing.
			v4 := netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0)).Masked()
			errs = append(errs, fmt.Errorf("%s.cidrs: %s is an IPv4-mapped IPv6 range, which no record has (IPv4 traffic is recorded with IPv4 addresses); write %s",
				key, p, v4))
		case p != p.Masked():
			errs = append(errs, fmt.Errorf("%s.cidrs: %s has address bits set beyond its /%d prefix; write %s for the range, or %s for the one address",
				key, p, p.Bits(), p.Masked(), netip.PrefixFrom(p.Addr(), p.Addr().BitLen())))
		}
	}
	for _, d := range f.Directions {
		if d > bpf.DirectionOutgoing {
			errs = append(errs, fmt.Errorf("%s.directions: %d is not incoming, outgoing or unknown", key, d))
		}
	}
	for _, c := range f.Cgroups {
		if !filepath.IsAbs(c) {
			errs = append(errs, fmt.Errorf("%s.cgroups: %q must be an absolute path", key, c))
		} else if err := checkCgroupDir(c); err != nil {
			errs = append(errs, fmt.Errorf("%s.cgroups: %w; list cgroup v2 directories", key, err))
		}
	}
	return errs
}

// contradictions finds filters that can never select anything, or never
// leave anything out: an entry both included and excluded, an included
// range or cgroup inside an excluded one, cgroups outside the watched one
// (watched: cgroup_path, or the root; "" when unknown), an excluded cgroup
// that holds all of the watched one.
func (f FiltersConfig) contradictions(watched string) []error {
	var errs []error
	for _, p := range f.Include.Ports {
		if slices.Contains(f.Exclude.Ports, p) {
			errs = append(errs, fmt.Errorf("filters.include.ports and filters.exclude.ports both list %d: an exclude wins, so including it selects nothing; remove it from one of them", p))
		}
	}
	for _, d := range f.Include.Directions {
		if slices.Contains(f.Exclude.Directions, d) {
			errs = append(errs, fmt.Errorf("filters.include.directions and filters.exclude.directions both list %s: an exclude wins, so including it selects nothing; remove it from one of them", d))
		}
	}
	for _, in := range f.Include.CIDRs {
		for _, ex := range f.Exclude.CIDRs {
			if in.IsValid() && ex.IsValid() && ex.Bits() <= in.Bits() && ex.Contains(in.Addr()) {
				errs = append(errs, fmt.Errorf("filters.include.cidrs: %s lies within %s of filters.exclude.cidrs, which wins, so including it selects nothing; remove one of them", in, ex))
			}
		}
	}

	valid := func(c string) bool { return filepath.IsAbs(c) && checkCgroupDir(c) == nil }
	// watched is clean; the entries are as written.
	inside := func(path, dir string) bool { return within(filepath.Clean(path), filepath.Clean(dir)) }
	for _, in := range f.Include.Cgroups {
		if !valid(in) {
			continue // said above
		}
		for _, ex := range f.Exclude.Cgroups {
			if valid(ex) && inside(in, ex) {
				errs = append(errs, fmt.Errorf("filters.include.cgroups: %s lies within %s of filters.exclude.cgroups, which wins, so including it selects nothing; remove one of them", in, ex))
			}
		}
		if watched != "" && !inside(in, watched) && !inside(watched, in) {
			errs = append(errs, fmt.Errorf("filters.include.cgroups: %s is not within %s, the cgroup watched (cgroup_path), so no record can match it; list cgroups below %s", in, watched, watched))
		}
	}
	for _, ex := range f.Exclude.Cgroups {
		if !valid(ex) || watched == "" {
			continue
		}
		switch {
		case inside(watched, ex):
			errs = append(errs, fmt.Errorf("filters.exclude.cgroups: %s holds all of %s, the cgroup watched (cgroup_path), so every record would be left out; set cgroup_path to what to watch, or remove the entry", ex, watched))
		case !inside(ex, watched):
			errs = append(errs, fmt.Errorf("filters.exclude.cgroups: %s is not within %s, the cgroup watched (cgroup_path), so it leaves nothing out; list cgroups below %s", ex, watched, watched))
		}
	}
	return errs
}

// within says whether the cgroup path is dir or below it; both are clean
// (filepath.Clean). The configuration's checks and the filters of records
// use it.
func within(path, dir string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}
