package receiver

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/netflowtcpend/netflowtcpend/internal/connmetrics"
)

// MetricsConfig configures the metrics the receiver emits in a metrics
// pipeline (docs/metrics.md). It has no effect without one.
type MetricsConfig struct {
	// Interval is how often points are passed on.
	Interval time.Duration `mapstructure:"interval"`
	// Temporality is cumulative (totals since each series started) or
	// delta (changes since the last interval).
	Temporality connmetrics.Temporality `mapstructure:"temporality"`
	// MaxSeries is the most series (attribute sets) of each metric; ends
	// beyond it are counted in one point with otel.metric.overflow: true.
	MaxSeries int `mapstructure:"max_series"`
	// Expiry drops a series no end has been counted in for this long; if
	// it comes back, it starts over (a new start time).
	Expiry time.Duration `mapstructure:"expiry"`
	// Attributes are further record attribute keys to group points by.
	Attributes []string `mapstructure:"attributes"`
	// AddressPrefix groups address attributes of Attributes into prefixes.
	AddressPrefix AddressPrefixConfig `mapstructure:"address_prefix"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// AddressPrefixConfig is the prefix length address attributes are
// grouped into, per address family.
type AddressPrefixConfig struct {
	IPv4 int `mapstructure:"ipv4"`
	IPv6 int `mapstructure:"ipv6"`

	// prevent unkeyed literal initialization
	_ struct{}
}

const (
	// defaultMetricsInterval is the OpenTelemetry SDK's default export
	// interval (OTEL_METRIC_EXPORT_INTERVAL).
	defaultMetricsInterval = time.Minute
	// defaultMaxSeries is the OpenTelemetry SDK's default cardinality
	// limit.
	defaultMaxSeries   = 2000
	defaultExpiry      = 5 * time.Minute
	minMetricsInterval = time.Second
	maxMaxSeries       = 100_000
)

func defaultMetricsConfig() MetricsConfig {
	return MetricsConfig{
		Interval:      defaultMetricsInterval,
		Temporality:   connmetrics.Cumulative,
		MaxSeries:     defaultMaxSeries,
		Expiry:        defaultExpiry,
		AddressPrefix: AddressPrefixConfig{IPv4: 32, IPv6: 128},
	}
}

// perConnection are record attributes whose every value is one
// connection's: grouping by them would make a series per connection, and
// the measured ones are the metrics' values already.
var perConnection = []attribute{
	attrSocketCookie, attrStartTime, attrDuration, attrBytesSent, attrBytesReceived,
	attrSegmentsSent, attrSegmentsReceived, attrRTT, attrRetransmissions,
}

// validate checks the metrics block; excluded is attributes.exclude.
func (c MetricsConfig) validate(excluded []string) []error {
	var errs []error
	switch {
	case c.Interval < minMetricsInterval:
		errs = append(errs, fmt.Errorf("metrics.interval %v must be at least %v; write a duration with its unit, e.g. 60s (a bare number is nanoseconds)",
			c.Interval, minMetricsInterval))
	case c.Expiry < c.Interval:
		errs = append(errs, fmt.Errorf("metrics.expiry %v must be at least metrics.interval (%v): a series must live to be exported", c.Expiry, c.Interval))
	}
	if c.Temporality != connmetrics.Cumulative && c.Temporality != connmetrics.Delta {
		errs = append(errs, fmt.Errorf("metrics.temporality %v is not cumulative or delta", c.Temporality))
	}
	if c.MaxSeries < 1 || c.MaxSeries > maxMaxSeries {
		errs = append(errs, fmt.Errorf("metrics.max_series %d must be from 1 to %d", c.MaxSeries, maxMaxSeries))
	}
	for i, key := range c.Attributes {
		a, known := attributeByKey(key)
		switch {
		case slices.Contains(connmetrics.DefaultAttributes, key):
			errs = append(errs, fmt.Errorf("metrics.attributes: %q is a point attribute already; remove it", key))
		case key == connmetrics.AttrHostName || key == connmetrics.AttrContainerID:
			errs = append(errs, fmt.Errorf("metrics.attributes: %q is a resource attribute of every point already; remove it", key))
		case !known && slices.Contains(k8sPeerKeys, key):
			// Records carry them with the kubernetes: block (Config checks).
		case !known:
			errs = append(errs, fmt.Errorf("metrics.attributes: %q is not an attribute of this receiver's records; the attributes are: %s",
				key, strings.Join(slices.Concat(attributeKeys[:], k8sPeerKeys), ", ")))
		case slices.Contains(perConnection, a):
			errs = append(errs, fmt.Errorf("metrics.attributes: %q is one connection's own value: grouping by it would make a series per connection (the measured values are the metrics); remove it", key))
		case slices.Contains(excluded, key):
			errs = append(errs, fmt.Errorf("metrics.attributes: %q is left out of records by attributes.exclude, and points take their attributes from the records; remove it from one of them", key))
		case slices.Contains(c.Attributes[:i], key):
			errs = append(errs, fmt.Errorf("metrics.attributes: %q is listed twice", key))
		}
	}
	if p := c.AddressPrefix.IPv4; p < 1 || p > 32 {
		errs = append(errs, fmt.Errorf("metrics.address_prefix.ipv4 %d must be from 1 to 32 (32 keeps addresses whole)", p))
	}
	if p := c.AddressPrefix.IPv6; p < 1 || p > 128 {
		errs = append(errs, fmt.Errorf("metrics.address_prefix.ipv6 %d must be from 1 to 128 (128 keeps addresses whole)", p))
	}
	return errs
}

// settings are the aggregator's settings for this configuration.
func (c MetricsConfig) settings(hostName, scope string) connmetrics.Settings {
	return connmetrics.Settings{
		MaxSeries: c.MaxSeries, Expiry: c.Expiry, Temporality: c.Temporality,
		Attributes: c.Attributes, IPv4Prefix: c.AddressPrefix.IPv4, IPv6Prefix: c.AddressPrefix.IPv6,
		HostName: hostName, ScopeName: scope,
	}
}
