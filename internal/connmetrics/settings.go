// Package connmetrics turns connection ends into the receiver's five
// metrics (netflow.tcp.connections, netflow.tcp.io, netflow.tcp.duration,
// netflow.tcp.rtt, netflow.tcp.retransmissions): exact sums and histograms
// per series, a series being a resource (the socket's container) and a set
// of point attributes. At most Settings.MaxSeries series exist; ends beyond
// them go to one overflow series, so totals stay exact. Series unseen for
// Settings.Expiry go.
//
// An Aggregator is fed by one goroutine (the receiver's read loop) and
// allocates nothing per end once its series exist.
package connmetrics

import (
	"fmt"
	"time"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Temporality is how points report their values.
type Temporality uint8

// Temporalities, as the metrics.temporality setting names them.
const (
	// Cumulative points carry totals since their series started.
	Cumulative Temporality = iota
	// Delta points carry what changed since the last export.
	Delta
)

var temporalityNames = [...]string{Cumulative: "cumulative", Delta: "delta"}

func (t Temporality) String() string {
	if int(t) < len(temporalityNames) {
		return temporalityNames[t]
	}
	return fmt.Sprintf("Temporality(%d)", t)
}

// UnmarshalText accepts cumulative and delta.
func (t *Temporality) UnmarshalText(text []byte) error {
	for i, name := range temporalityNames {
		if string(text) == name {
			*t = Temporality(i)
			return nil
		}
	}
	return fmt.Errorf("%q is not cumulative or delta", text)
}

// MarshalText writes the name UnmarshalText reads.
func (t Temporality) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Settings configure an Aggregator.
type Settings struct {
	// MaxSeries is the most series (attribute sets) of each metric;
	// ends of further sets are counted in the overflow series.
	MaxSeries int
	// Expiry drops a series that no end has been added to for this long.
	Expiry time.Duration
	// Temporality of every point.
	Temporality Temporality
	// Attributes are further record attribute keys that points are
	// grouped by, after the default ones, read from End.Record.
	Attributes []string
	// IPv4Prefix and IPv6Prefix group the values of address attributes
	// (keys ending in ".address") among Attributes into prefixes of these
	// lengths; 32 and 128 keep addresses whole.
	IPv4Prefix, IPv6Prefix int
	// HostName is the host.name of every resource ("" for none).
	HostName string
	// ScopeName is the instrumentation scope of the metrics.
	ScopeName string
}

// Metric names, as shared/CONTRACT.md fixes them.
const (
	MetricConnections     = "netflow.tcp.connections"
	MetricIO              = "netflow.tcp.io"
	MetricDuration        = "netflow.tcp.duration"
	MetricRTT             = "netflow.tcp.rtt"
	MetricRetransmissions = "netflow.tcp.retransmissions"
)

// Point and resource attribute keys. The netflow.* keys are those of the
// log records (package receiver checks that they agree).
const (
	AttrDirection          = "netflow.direction"
	AttrEndReason          = "netflow.end.reason"
	AttrErrorType          = string(semconv.ErrorTypeKey)
	AttrServerPort         = string(semconv.ServerPortKey)
	AttrNetworkType        = string(semconv.NetworkTypeKey)
	AttrNetworkIODirection = string(semconv.NetworkIODirectionKey)
	// AttrOverflow marks the series of the ends beyond MaxSeries, as the
	// OpenTelemetry SDK's cardinality limit does.
	AttrOverflow    = "otel.metric.overflow"
	AttrHostName    = string(semconv.HostNameKey)
	AttrContainerID = string(semconv.ContainerIDKey)
)

// DefaultAttributes are the point attributes of every series (error.type
// and server.port only where the end has them).
var DefaultAttributes = []string{AttrDirection, AttrEndReason, AttrErrorType, AttrServerPort, AttrNetworkType}

// Histogram bucket boundaries, in seconds; see docs/metrics.md for why.
var (
	// DurationBounds: ends of TCP connections run from sub-millisecond
	// calls on one host, through requests of tens to hundreds of
	// milliseconds and pooled keep-alive connections of seconds to
	// minutes, to streams of hours: about two buckets per decade, 1 ms to
	// 1 h.
	DurationBounds = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}
	// RTTBounds: smoothed RTTs run from tens of microseconds on one host
	// (loopback, veth), under a millisecond within a data center, 1 to 20
	// ms within a region, 20 to 300 ms across continents, to seconds on a
	// struggling path: 1-2-5 steps from 100 us to 1 s, then 2 and 5 s.
	RTTBounds = []float64{0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5}
)
