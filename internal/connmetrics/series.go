package connmetrics

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// series holds the values of one attribute set of every metric.
type series struct {
	key   string // "" for the overflow series
	res   *resource
	attrs pcommon.Map // point attributes, built when the series was made

	start   pcommon.Timestamp // start of the values held (cumulative: the series' first end)
	seen    pcommon.Timestamp // latest end added
	changed bool              // added to since the last Collect
	// ioOverflow: this attribute set has no netflow.tcp.io series of its
	// own, its bytes go to the overflow series' io points. An attribute
	// set makes two io series (transmit and receive), so io reaches
	// max_series at half the attribute sets of the other metrics.
	ioOverflow bool
	// For the overflow series: whether ends, or only bytes of sets with
	// ioOverflow, were counted in it (only those metrics get its points).
	overflowEnds, overflowIO bool

	conns, sent, received, retrans uint64
	duration, rtt                  histogram
}

func (s *series) add(e *End) {
	s.changed = true
	s.seen = max(s.seen, e.Time)
	s.conns++
	s.retrans += e.Retransmits
	s.addIO(e)
	if e.StartObserved {
		s.duration.observe(DurationBounds, e.Duration)
	}
	if e.RTT > 0 {
		s.rtt.observe(RTTBounds, e.RTT)
	}
}

func (s *series) addIO(e *End) {
	s.sent += e.BytesSent
	s.received += e.BytesReceived
}

// reset starts the values over at start, for delta temporality.
func (s *series) reset(start pcommon.Timestamp) {
	s.start = start
	s.conns, s.sent, s.received, s.retrans = 0, 0, 0, 0
	s.duration, s.rtt = histogram{}, histogram{}
}

// maxBuckets is the most buckets of a histogram: len(bounds)+1 of the
// longer bounds (a test checks it).
const maxBuckets = 16

// histogram is an explicit-bucket histogram: buckets[i] counts the values
// in (bounds[i-1], bounds[i]], the last bucket those above every bound.
type histogram struct {
	count    uint64
	sum      float64
	min, max float64
	buckets  [maxBuckets]uint64
}

func (h *histogram) observe(bounds []float64, v float64) {
	// A linear search: about 15 bounds, and most values fall in the
	// first few.
	i := 0
	for i < len(bounds) && v > bounds[i] {
		i++
	}
	h.buckets[i]++
	if h.count == 0 {
		h.min, h.max = v, v
	} else {
		h.min, h.max = min(h.min, v), max(h.max, v)
	}
	h.count++
	h.sum += v
}
