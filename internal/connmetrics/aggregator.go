package connmetrics

import (
	"encoding/binary"
	"math"
	"net/netip"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// End is one connection end as the metrics see it: the values of its
// default point attributes, what it measured, and its log record's
// attributes for the further keys of Settings.Attributes.
type End struct {
	// Time is when the connection ended (the record's Timestamp).
	Time pcommon.Timestamp
	// Container is the container.id of the socket's resource ("": none).
	Container string

	Direction   string // netflow.direction
	EndReason   string // netflow.end.reason
	ErrorType   string // error.type; "" when the end is not a failure
	ServerPort  int    // server.port; 0 when there is no server side (direction unknown)
	NetworkType string // network.type

	BytesSent, BytesReceived uint64  // payload bytes
	Retransmits              uint64  // retransmitted segments
	Duration                 float64 // seconds, when StartObserved
	StartObserved            bool
	RTT                      float64 // smoothed RTT in seconds; 0 when not sampled

	// Record holds the log record's attributes; read only for the keys of
	// Settings.Attributes, so it may be the zero Map when there are none.
	Record pcommon.Map
}

// Aggregator holds the series. Not safe for concurrent use.
type Aggregator struct {
	set       Settings
	series    map[string]*series // by key (see appendKey); the overflow series is not here
	overflow  *series            // nil until an end overflows
	resources map[string]*resource
	key       []byte // the key of the end being added, reused
	// prefixed[i] says whether Settings.Attributes[i] is an address
	// attribute grouped into prefixes.
	prefixed   []bool
	overflowed uint64 // ends counted in the overflow series, in all
	ioSeries   int    // netflow.tcp.io series of the attribute sets (two each)
}

// resource is the Resource of the series of one container.
type resource struct {
	container string
	attrs     pcommon.Map
	series    int // how many series have it; at 0 it goes
}

// New returns an Aggregator without series.
func New(set Settings) *Aggregator {
	a := &Aggregator{
		set:       set,
		series:    map[string]*series{},
		resources: map[string]*resource{},
		prefixed:  make([]bool, len(set.Attributes)),
	}
	for i, k := range set.Attributes {
		a.prefixed[i] = strings.HasSuffix(k, ".address") && (set.IPv4Prefix < 32 || set.IPv6Prefix < 128)
	}
	return a
}

// Add counts one end in its series, creating the series if there is room
// and counting it in the overflow series if not.
func (a *Aggregator) Add(e *End) {
	a.key = a.appendKey(a.key[:0], e)
	s, ok := a.series[string(a.key)] // no allocation for the lookup
	if !ok {
		if len(a.series) >= a.set.MaxSeries {
			o := a.overflowSeries(e.Time)
			o.overflowEnds = true
			o.add(e)
			a.overflowed++
			return
		}
		s = a.newSeries(string(a.key), e)
		a.series[s.key] = s
		if a.ioSeries+2 <= a.set.MaxSeries {
			a.ioSeries += 2
		} else {
			s.ioOverflow = true
		}
	}
	if !s.ioOverflow {
		s.add(e)
		return
	}
	// The set's own series but for io, whose bytes overflow.
	b := *e
	b.BytesSent, b.BytesReceived = 0, 0
	s.add(&b)
	o := a.overflowSeries(e.Time)
	o.overflowIO = true
	o.changed = true
	o.seen = max(o.seen, e.Time)
	o.addIO(e)
}

// overflowSeries returns the overflow series, made at start if there is
// none.
func (a *Aggregator) overflowSeries(start pcommon.Timestamp) *series {
	if a.overflow == nil {
		a.overflow = a.newOverflow(start)
	}
	return a.overflow
}

// Series returns how many series there are, the overflow series not
// counted.
func (a *Aggregator) Series() int { return len(a.series) }

// Overflowed returns how many ends were counted in the overflow series.
func (a *Aggregator) Overflowed() uint64 { return a.overflowed }

// appendKey appends the identity of e's series: its container and the
// values of its point attributes, each length-prefixed so that no two
// sets of values give the same bytes.
func (a *Aggregator) appendKey(b []byte, e *End) []byte {
	b = appendString(b, e.Container)
	b = appendString(b, e.Direction)
	b = appendString(b, e.EndReason)
	b = appendString(b, e.ErrorType)
	b = binary.LittleEndian.AppendUint16(b, uint16(e.ServerPort))
	b = appendString(b, e.NetworkType)
	for i, k := range a.set.Attributes {
		v, ok := e.Record.Get(k)
		if !ok {
			b = append(b, 0xff) // absent: unlike any value's type byte
			continue
		}
		if a.prefixed[i] && v.Type() == pcommon.ValueTypeStr {
			if p, ok := a.prefix(v.Str()); ok {
				b = append(b, 0xfe)
				a16 := p.Addr().As16()
				b = append(b, a16[:]...)
				b = append(b, byte(p.Bits()))
				continue
			}
		}
		b = appendValue(b, v)
	}
	return b
}

// prefix returns the prefix an address attribute's value is grouped into.
func (a *Aggregator) prefix(s string) (netip.Prefix, bool) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false // not an address: grouped by its text
	}
	bits := a.set.IPv6Prefix
	if addr.Is4() {
		bits = a.set.IPv4Prefix
	}
	p, err := addr.Prefix(bits)
	return p, err == nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendValue appends an attribute value: its type, then its value.
func appendValue(b []byte, v pcommon.Value) []byte {
	b = append(b, byte(v.Type()))
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return appendString(b, v.Str())
	case pcommon.ValueTypeInt:
		return binary.LittleEndian.AppendUint64(b, uint64(v.Int()))
	case pcommon.ValueTypeDouble:
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Double()))
	case pcommon.ValueTypeBool:
		if v.Bool() {
			return append(b, 1)
		}
		return append(b, 0)
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		b = binary.AppendUvarint(b, uint64(s.Len()))
		for i := range s.Len() {
			b = appendValue(b, s.At(i))
		}
		return b
	default: // maps and bytes: no record attribute has them
		return appendString(b, v.AsString())
	}
}

// newSeries creates the series of e, whose key is key: its point
// attributes are built here, once.
func (a *Aggregator) newSeries(key string, e *End) *series {
	s := &series{key: key, res: a.resource(e.Container), attrs: pcommon.NewMap(), start: e.Time}
	s.res.series++
	m := s.attrs
	m.EnsureCapacity(len(DefaultAttributes) + len(a.set.Attributes))
	m.PutStr(AttrDirection, e.Direction)
	m.PutStr(AttrEndReason, e.EndReason)
	if e.ErrorType != "" {
		m.PutStr(AttrErrorType, e.ErrorType)
	}
	if e.ServerPort != 0 {
		m.PutInt(AttrServerPort, int64(e.ServerPort))
	}
	m.PutStr(AttrNetworkType, e.NetworkType)
	for i, k := range a.set.Attributes {
		v, ok := e.Record.Get(k)
		if !ok {
			continue
		}
		if a.prefixed[i] && v.Type() == pcommon.ValueTypeStr {
			if p, ok := a.prefix(v.Str()); ok {
				if p.Bits() == p.Addr().BitLen() {
					m.PutStr(k, p.Addr().String())
				} else {
					m.PutStr(k, p.String())
				}
				continue
			}
		}
		v.CopyTo(m.PutEmpty(k))
	}
	return s
}

// newOverflow creates the overflow series: no attribute but
// otel.metric.overflow, on the host's resource (no container).
func (a *Aggregator) newOverflow(start pcommon.Timestamp) *series {
	s := &series{res: a.resource(""), attrs: pcommon.NewMap(), start: start}
	s.res.series++
	s.attrs.PutBool(AttrOverflow, true)
	return s
}

// resource returns the resource of container's series.
func (a *Aggregator) resource(container string) *resource {
	if r, ok := a.resources[container]; ok {
		return r
	}
	r := &resource{container: container, attrs: pcommon.NewMap()}
	if a.set.HostName != "" {
		r.attrs.PutStr(AttrHostName, a.set.HostName)
	}
	if container != "" {
		r.attrs.PutStr(AttrContainerID, container)
	}
	a.resources[container] = r
	return r
}
