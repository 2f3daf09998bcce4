package netflowtcpend

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/connmetrics"
	"github.com/netflowtcpend/netflowtcpend/internal/kubecache"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	flowreceiver "github.com/netflowtcpend/netflowtcpend/receiver"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	custom := flowreceiver.DefaultConfig()
	custom.RingBufferSize = 16 << 20
	custom.MaxBatchSize = 500
	custom.FlushInterval = time.Second
	custom.DNS.MaxAddresses = 1000
	custom.DNS.MaxNames = 3
	custom.DNS.PayloadLimit = 1232
	custom.DNS.MinTTL = 0

	filters := flowreceiver.DefaultConfig()
	filters.Filters = flowreceiver.FiltersConfig{
		Include: flowreceiver.FilterConfig{
			Ports:      []int{443, 80},
			CIDRs:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
			Directions: []bpf.Direction{bpf.DirectionOutgoing},
		},
		Exclude: flowreceiver.FilterConfig{Ports: []int{22}},
	}

	lean := flowreceiver.DefaultConfig()
	lean.Attributes.Exclude = []string{"netflow.socket.cookie", "netflow.cgroup.id"}

	conntrack := flowreceiver.DefaultConfig()
	conntrack.NAT.Conntrack = true
	k8sDefault := flowreceiver.DefaultConfig()
	k8sDefault.Kubernetes = configoptional.Some(flowreceiver.KubernetesConfig{AuthType: kubecache.AuthServiceAccount})
	k8sKubeConfig := flowreceiver.DefaultConfig()
	k8sKubeConfig.Kubernetes = configoptional.Some(flowreceiver.KubernetesConfig{AuthType: kubecache.AuthKubeConfig, Context: "staging"})
	metricsK8s := flowreceiver.DefaultConfig()
	metricsK8s.Kubernetes = configoptional.Some(flowreceiver.KubernetesConfig{AuthType: kubecache.AuthServiceAccount})
	metricsK8s.Metrics.Attributes = []string{"netflow.peer.k8s.namespace.name", "netflow.peer.k8s.workload.name"}
	k8sOff := flowreceiver.DefaultConfig()
	k8sOff.Kubernetes = configoptional.None[flowreceiver.KubernetesConfig]()
	metrics := flowreceiver.DefaultConfig()
	metrics.Metrics.Interval = 10 * time.Second
	metrics.Metrics.Temporality = connmetrics.Delta
	metrics.Metrics.MaxSeries = 500
	metrics.Metrics.Expiry = time.Minute
	metrics.Metrics.Attributes = []string{"network.peer.address", "process.executable.name"}
	metrics.Metrics.AddressPrefix.IPv4 = 24
	metrics.Metrics.AddressPrefix.IPv6 = 64

	dnsOff := flowreceiver.DefaultConfig()
	dnsOff.DNS.Enabled = false
	dnsOff.DNS.MaxNames = 0 // not checked while DNS is off

	tlsOff := flowreceiver.DefaultConfig()
	tlsOff.TLS.Enabled = false

	tests := []struct {
		id      string
		want    *Config
		wantErr string // substring of the unmarshal or validation error
	}{
		{id: "", want: flowreceiver.DefaultConfig()},
		{id: "custom", want: custom},
		{id: "dns_off", want: dnsOff},
		{id: "tls_off", want: tlsOff},
		{id: "tls_scalar", wantErr: "'tls' expected a map or struct, got \"bool\""},
		{id: "filters", want: filters},
		{id: "attributes", want: lean},
		{id: "nat_conntrack", want: conntrack},
		{id: "kubernetes_empty", want: k8sDefault},
		{id: "kubernetes_null", want: k8sDefault},
		{id: "kubernetes_kubeconfig", want: k8sKubeConfig},
		{id: "kubernetes_off", want: k8sOff},
		{id: "metrics_k8s", want: metricsK8s},
		{id: "metrics_k8s_off", wantErr: `metrics.attributes: "netflow.peer.k8s.service.name" is set only with the kubernetes: block; add it, or remove the key`},
		{id: "kubernetes_bad", wantErr: `kubernetes.auth_type "token" must be serviceAccount (in a pod, the default) or kubeConfig (the kubeconfig that KUBECONFIG names)` + "\n" +
			`kubernetes.context "staging" chooses a kubeconfig context: it needs auth_type kubeConfig`},
		{id: "kubernetes_unknown_key", wantErr: "'kubernetes' decoding failed due to the following error(s):\n\n'receiver.KubernetesConfig' has invalid keys: auth"},
		{id: "metrics", want: metrics},
		{id: "metrics_bad", wantErr: "metrics.interval 5ns must be at least 1s; write a duration with its unit, e.g. 60s (a bare number is nanoseconds)\n" +
			"metrics.max_series 0 must be from 1 to 100000\n" +
			`metrics.attributes: "server.port" is a point attribute already; remove it` + "\n" +
			`metrics.attributes: "container.id" is a resource attribute of every point already; remove it` + "\n" +
			`metrics.attributes: "netflow.peer.nickname" is not an attribute of this receiver's records; the attributes are: netflow.direction, source.address,`},
		{id: "metrics_bad", wantErr: `metrics.attributes: "netflow.bytes.sent" is one connection's own value: grouping by it would make a series per connection (the measured values are the metrics); remove it` + "\n" +
			`metrics.attributes: "process.executable.name" is left out of records by attributes.exclude, and points take their attributes from the records; remove it from one of them` + "\n" +
			`metrics.attributes: "network.peer.address" is listed twice` + "\n" +
			"metrics.address_prefix.ipv4 33 must be from 1 to 32 (32 keeps addresses whole)\n" +
			"metrics.address_prefix.ipv6 0 must be from 1 to 128 (128 keeps addresses whole)"},
		{id: "metrics_expiry", wantErr: "metrics.expiry 1m0s must be at least metrics.interval (2m0s): a series must live to be exported"},
		{id: "metrics_temporality", wantErr: `'metrics.temporality' "Delta" is not cumulative or delta`},
		{id: "attributes_bad", wantErr: `attributes.exclude: "source.port" is a field of the event itself and cannot be left out` + "\n" +
			`attributes.exclude: "netflow.pid" is not an attribute of this receiver; the attributes are: network.transport,`},
		{id: "filters_bad", wantErr: "filters.include.ports: 0 is not a port (1 to 65535)\n" +
			"filters.include.ports: 70000 is not a port (1 to 65535)\n" +
			"filters.exclude.cgroups: \"sys/fs/cgroup\" must be an absolute path\n" +
			"filters.exclude.cgroups: /proc is not a directory on a cgroup v2 filesystem"},
		// Wrong YAML types fail while decoding, naming the key and what it
		// takes.
		{id: "ring_buffer_string", wantErr: "'ring_buffer_size' expected type 'int', got unconvertible type 'string'"},
		{id: "ports_map", wantErr: "'filters.include.ports' source data must be an array or slice, got map"},
		{id: "dns_scalar", wantErr: "'dns' expected a map or struct, got \"bool\""},
		{id: "exclude_self_string", wantErr: "'filters.exclude_self' expected type 'bool', got unconvertible type 'string'"},
		{id: "nat_conntrack_string", wantErr: "'nat.conntrack' expected type 'bool', got unconvertible type 'string'"},
		{id: "unknown_nested_key", wantErr: "'filters.include' has invalid keys: port"},
		// Out of range; bare numbers where durations belong.
		{id: "ring_too_big", wantErr: "ring_buffer_size 2147483648 must be a power of two from 65536 (64 KiB) to 1073741824 (1 GiB)"},
		{id: "batch_too_big", wantErr: "max_batch_size 2000000 must be from 1 to 1048576"},
		{id: "interval_bare_number", wantErr: "flush_interval 200ns is shorter than 1ms; write a duration with its unit, e.g. 200ms (a bare number is nanoseconds)"},
		{id: "min_ttl_bare_number", wantErr: "dns.min_ttl 5ns: DNS TTLs are whole seconds; use 0s or at least 1s, with the unit (a bare number is nanoseconds)"},
		{id: "dns_too_big", wantErr: "dns.max_addresses 100000000 must be from 1 to 16777216\n" +
			"dns.max_names 0 must be from 1 to 1000\n" +
			"dns.payload_limit 9000 must be from 512 to 8192 bytes"},
		{id: "ports_negative", wantErr: "filters.exclude.ports: -1 is not a port (1 to 65535)"},
		{id: "cidrs_sloppy", wantErr: "filters.include.cidrs: 10.0.0.1/8 has address bits set beyond its /8 prefix; write 10.0.0.0/8 for the range, or 10.0.0.1/32 for the one address\n" +
			"filters.include.cidrs: ::ffff:10.0.0.0/104 is an IPv4-mapped IPv6 range, which no record has (IPv4 traffic is recorded with IPv4 addresses); write 10.0.0.0/8"},
		// Filters that can never select anything.
		{id: "contradictions", wantErr: "filters.include.ports and filters.exclude.ports both list 443: an exclude wins, so including it selects nothing; remove it from one of them\n" +
			"filters.include.directions and filters.exclude.directions both list incoming: an exclude wins, so including it selects nothing; remove it from one of them\n" +
			"filters.include.cidrs: 10.1.0.0/16 lies within 10.0.0.0/8 of filters.exclude.cidrs, which wins, so including it selects nothing; remove one of them"},
		// Text fields fail while decoding, with the key's full path.
		{id: "cidr_bad", wantErr: `'filters.include.cidrs[0]' netip.ParsePrefix("10.0.0.0"): no '/'`},
		{id: "direction_bad", wantErr: `'filters.exclude.directions[0]' "sideways" is not incoming, outgoing or unknown`},
		{id: "relative_cgroup", wantErr: `cgroup_path "sys/fs/cgroup" must be an absolute path`},
		{id: "missing_cgroup", wantErr: "cgroup_path: /sys/fs/cgroup/does-not-exist-netflowtcpend does not exist; create it first " +
			"(the cgroup of a systemd unit or a container exists only while it runs), use another cgroup v2 directory, or leave cgroup_path empty for the root"},
		{id: "not_cgroup", wantErr: "cgroup_path: /proc is not a directory on a cgroup v2 filesystem"},
		{id: "ring_not_power_of_two", wantErr: "ring_buffer_size 1000000 must be a power of two from 65536 (64 KiB) to 1073741824 (1 GiB)"},
		{id: "ring_too_small", wantErr: "ring_buffer_size 4096 must be a power of two"},
		{id: "batch_zero", wantErr: "max_batch_size 0 must be from 1 to 1048576"},
		{id: "interval_negative", wantErr: "flush_interval -1s must be positive"},
		{id: "unknown_key", wantErr: "has invalid keys: buffer"},
		{id: "dns_bad", wantErr: "dns.max_addresses 0 must be from 1 to 16777216\n" +
			"dns.max_names 5000 must be from 1 to 1000\n" +
			"dns.payload_limit 100 must be from 512 to 8192 bytes\n" +
			"dns.min_ttl -1s must not be negative"},
	}
	for _, tt := range tests {
		t.Run(metadata.Type.String()+"/"+tt.id, func(t *testing.T) {
			id := component.NewID(metadata.Type)
			if tt.id != "" {
				id = component.NewIDWithName(metadata.Type, tt.id)
			}
			sub, err := cm.Sub(id.String())
			require.NoError(t, err)
			cfg := NewFactory().CreateDefaultConfig()
			err = sub.Unmarshal(cfg)
			if err == nil {
				err = confmap.Validate(cfg)
			}
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg)
		})
	}
}

func TestDefaultConfigIsValidAndWatchesTheRoot(t *testing.T) {
	cfg := flowreceiver.DefaultConfig()
	assert.Empty(t, cfg.CgroupPath, "empty means the cgroup v2 root, found at start")
	require.NoError(t, cfg.Validate())
	assert.LessOrEqual(t, cfg.FlushInterval, time.Second, "records must reach the pipeline within a second")
	assert.True(t, cfg.Filters.ExcludeSelf, "the collector's own connections are left out by default")
}
