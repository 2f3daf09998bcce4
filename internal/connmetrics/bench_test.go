package connmetrics

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// BenchmarkAdd is the metrics' cost per connection end in the read loop,
// over 256 ends in 64 series: with the default attributes, and with a peer
// address grouped into /24 prefixes and the executable name read from the
// record. It allocates nothing once the series exist.
func BenchmarkAdd(b *testing.B) {
	for _, tt := range []struct {
		name  string
		attrs []string
	}{
		{"attributes=default", nil},
		{"attributes=peer_prefix,executable", []string{"network.peer.address", "process.executable.name"}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			set := Settings{MaxSeries: 2000, Expiry: time.Hour, IPv4Prefix: 24, IPv6Prefix: 64, Attributes: tt.attrs, HostName: "node"}
			a := New(set)
			ends := make([]End, 256)
			for i := range ends {
				rec := pcommon.NewMap()
				// A record's attributes: the two keys among others, as
				// records carry them.
				for j := range 20 {
					rec.PutStr(fmt.Sprintf("other.attribute.%d", j), "x")
				}
				rec.PutStr("network.peer.address", fmt.Sprintf("10.0.%d.%d", i%16, i))
				rec.PutStr("process.executable.name", fmt.Sprintf("exe%d", i%4))
				ends[i] = End{Time: t0, Container: fmt.Sprintf("c%d", i%4), Direction: "outgoing", EndReason: "fin",
					ServerPort: 443 + i%4, NetworkType: "ipv4", BytesSent: 1000, BytesReceived: 50000, Retransmits: 0,
					Duration: 0.02 * float64(i%50), StartObserved: true, RTT: 0.0002 * float64(i%30+1), Record: rec}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				a.Add(&ends[i%len(ends)])
			}
			b.ReportMetric(float64(a.Series()), "series")
		})
	}
}

// BenchmarkCollect is one export of 2000 series (cumulative).
func BenchmarkCollect(b *testing.B) {
	a := New(Settings{MaxSeries: 2000, Expiry: time.Hour, IPv4Prefix: 32, IPv6Prefix: 128, HostName: "node"})
	for port := 1; port <= 2000; port++ {
		a.Add(&End{Time: t0, Direction: "incoming", EndReason: "fin", ServerPort: port, NetworkType: "ipv4",
			BytesSent: 1, Duration: 1, StartObserved: true, RTT: 0.001})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		a.Collect(at(time.Duration(i) * time.Second))
	}
}
