//go:build linux

package receiver

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/featuregate"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/xpdata/pref"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/dnscache"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/bpftest"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
)

// benchConfig is the default configuration but for the filters.
var benchConfig = Config{
	RingBufferSize: 8 << 20, MaxBatchSize: 1024, FlushInterval: 200 * time.Millisecond,
	DNS: DNSConfig{Enabled: true, MaxAddresses: 65536, MaxNames: 10, PayloadLimit: 4096, MinTTL: 5 * time.Second},
}

// benchEvent is a typical record: an outgoing connection to a named server.
func benchEvent(i int) bpf.Event {
	return bpf.Event{
		TimeNs: 2_000_000_000, StartNs: 1_000_000_000, Cookie: uint64(i), CgroupID: 1, Netns: 4026531840,
		Source:      netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 40000),
		Destination: netip.AddrPortFrom(netip.AddrFrom4([4]byte{93, 184, 216, byte(i % 16)}), 443),
		Direction:   bpf.DirectionOutgoing, EndBy: bpf.EndByLocal, EndReason: bpf.EndFIN, State: 1,
		SRTTMicros: 250, BytesSent: 1000, BytesReceived: 50_000, SegsSent: 10, SegsReceived: 40,
		PID: 4242, Executable: "curl",
	}
}

// learnBenchNames gives the destinations of benchEvent names, as a resolver
// answer would.
func learnBenchNames(b *testing.B, c *dnscache.Cache) {
	b.Helper()
	for i := range 16 {
		name := fmt.Sprintf("www%d.example.com", i)
		q := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: uint16(i)})
		_ = q.StartQuestions()
		_ = q.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		query, _ := q.Finish()
		a := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: uint16(i), Response: true})
		_ = a.StartQuestions()
		_ = a.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		_ = a.StartAnswers()
		_ = a.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name + "."), Class: dnsmessage.ClassINET, TTL: 3600},
			dnsmessage.AResource{A: [4]byte{93, 184, 216, byte(i)}})
		answer, _ := a.Finish()
		server := netip.MustParseAddrPort("10.0.0.53:53")
		c.Observe(dnscache.Message{TimeNs: 1_000_000_000, Cookie: 1, Dest: server, Sent: true, Payload: query})
		c.Observe(dnscache.Message{TimeNs: 1_000_000_001, Cookie: 1, Source: server, Payload: answer})
	}
	require.Equal(b, 16, c.Len())
}

// benchCgroups returns a cgroup resolver over a directory tree of its own
// and the id of a cgroup in it: records resolve their cgroup, as a
// receiver's records do once their cgroup is known.
func benchCgroups(b *testing.B) (*cgroupv2.Paths, uint64) {
	b.Helper()
	root := b.TempDir()
	dir := filepath.Join(root, "bench.slice")
	require.NoError(b, os.Mkdir(dir, 0o755))
	var st unix.Stat_t
	require.NoError(b, unix.Stat(dir, &st))
	paths := cgroupv2.NewPaths(root, time.Hour)
	path, ok := paths.Path(st.Ino)
	require.True(b, ok)
	require.Equal(b, "/bench.slice", path)
	return paths, st.Ino
}

// processCPU returns the CPU time this process has used, all threads
// (the garbage collector's included): on a shared machine, ns/op counts
// the time other work held the CPU too, and on an idle second core the
// collector's background work is not in ns/op at all.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru unix.Rusage
	require.NoError(b, unix.Getrusage(unix.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discard is a consumer that drops what it gets and counts records.
type discard struct{ records atomic.Int64 }

func (d *discard) ConsumeLogs(_ context.Context, ld plog.Logs) error {
	d.records.Add(int64(ld.LogRecordCount()))
	return nil
}

func (d *discard) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

// BenchmarkDecodeEnrichConvert is the user-space cost of one record: decode
// the kernel's bytes, look both addresses up in the DNS cache, convert to a
// plog record in a batch (target: under 1 µs, a million records per second
// per core), with every attribute (the default) and with only the event's
// own fields (attributes.exclude listing all the others); and with the
// collector's pdata.useProtoPooling feature gate on, each batch released
// when it is passed on, as the collector's pipeline releases it once its
// exporter is done with it (pref.UnrefLogs): the records' values then come
// from pools.
func BenchmarkDecodeEnrichConvert(b *testing.B) {
	for _, tt := range []struct {
		name    string
		exclude []string
		pooling bool
	}{
		{"attributes=default", nil, false},
		{"attributes=minimal", optionalAttributeKeys(), false},
		{"attributes=default,pooling", nil, true},
	} {
		b.Run(tt.name, func(b *testing.B) {
			if tt.pooling {
				require.NoError(b, featuregate.GlobalRegistry().Set(pref.UseProtoPooling.ID(), true))
				defer func() { require.NoError(b, featuregate.GlobalRegistry().Set(pref.UseProtoPooling.ID(), false)) }()
			}
			cfg := benchConfig
			cfg.Attributes.Exclude = tt.exclude
			r := newTestReceiver(b, cfg, &discard{})
			var cgroupID uint64
			r.cgroups, cgroupID = benchCgroups(b)
			learnBenchNames(b, r.dns)
			raws := make([][]byte, 256)
			for i := range raws {
				e := benchEvent(i)
				e.CgroupID = cgroupID
				raws[i] = e.Encode()
			}
			l := testLoop(r, nil)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU(b)
			for i := range b.N {
				l.add(raws[i%len(raws)])
				if l.logs.full() {
					logs, _ := l.logs.take()
					if tt.pooling { // as the pipeline does (refconsumer) when its consumer returns
						pref.MarkPipelineOwnedLogs(logs)
						pref.UnrefLogs(logs)
					}
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(l.logs.conv.attrs.count()), "attributes")
		})
	}
}

// BenchmarkRingToConsumer is the whole receiver: records written into the
// kernel ring buffer (by a BPF program repeated with BPF_PROG_TEST_RUN) are
// read, decoded, enriched, converted, batched and passed to a consumer.
func BenchmarkRingToConsumer(b *testing.B) {
	testenv.RequireRoot(b)
	sink := &discard{}
	r := newTestReceiver(b, benchConfig, sink)
	paths, cgroupID := benchCgroups(b)
	r.cgroups = paths
	e := benchEvent(0)
	e.CgroupID = cgroupID
	filler, err := bpftest.NewFiller(64<<20, e)
	require.NoError(b, err)
	defer filler.Close()
	rd, err := filler.NewReader()
	require.NoError(b, err)
	defer rd.Close()

	learnBenchNames(b, r.dns)
	loop := testLoop(r, rd)
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop.run(context.Background())
	}()

	const chunk = 64 * 1024 // 12 MiB of records: fits in the ring
	total := (b.N + chunk - 1) / chunk * chunk
	b.ResetTimer()
	cpu := processCPU(b)
	for sent := 0; sent < total; sent += chunk {
		require.NoError(b, filler.Fill(chunk))
		for sink.records.Load() < int64(sent+chunk) {
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(total), "cpu-ns/op")
	lost, err := filler.Lost()
	require.NoError(b, err)
	require.Zero(b, lost, "the ring buffer overflowed; the measurement is not of the receiver")
	require.NoError(b, rd.Flush())
	<-done
}
