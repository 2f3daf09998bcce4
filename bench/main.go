//go:build linux

// Command bench measures what netflowtcpend costs the host and whether it
// loses records, and prints one table: each figure next to its baseline,
// their ratio and the target. `make bench` runs it as root; it is not part
// of make test.
//
// Comparisons are measured in one run and interleaved (A B A B ...) over
// several rounds, because the machine is shared and noisy: the table gives
// the median and, in brackets, the lowest and highest round.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/loadtest"
)

var (
	binary   = flag.String("binary", "dist/otelcol-netflowtcpend", "the collector built by make build")
	rounds   = flag.Int("rounds", 5, "rounds of each interleaved comparison")
	duration = flag.Duration("duration", 3*time.Second, "length of one workload run")
	clients  = flag.Int("clients", 4, "parallel clients of the connection workload")
	goCount  = flag.Int("gocount", 5, "runs of each Go benchmark")
	only     = flag.String("only", "", "run only the steps whose name contains this (e.g. kernel)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// env is what every phase uses.
type env struct {
	tmp, cgroup, home string
	sink              *loadtest.Sink
}

func run() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it attaches BPF programs and moves itself into a cgroup (sudo make bench)")
	}
	if _, err := os.Stat(*binary); err != nil {
		return fmt.Errorf("%w: run make build first", err)
	}
	root, err := cgroupv2.Root()
	if err != nil {
		return err
	}
	e := &env{}
	if e.tmp, err = os.MkdirTemp("", "netflowtcpend-bench"); err != nil {
		return err
	}
	defer os.RemoveAll(e.tmp)
	// The sink listens before this process moves into the bench cgroup:
	// the sockets it accepts belong to its listener's cgroup, outside.
	if e.sink, err = loadtest.NewSink(); err != nil {
		return err
	}
	defer e.sink.Close()
	e.cgroup = filepath.Join(root, fmt.Sprintf("netflowtcpend-bench-%d", os.Getpid()))
	if err := os.Mkdir(e.cgroup, 0o755); err != nil {
		return err
	}
	defer os.Remove(e.cgroup)
	if e.home, err = loadtest.OwnCgroup(root); err != nil {
		return err
	}
	if err := loadtest.MovePID(e.cgroup); err != nil {
		return err
	}
	defer loadtest.MovePID(e.home) //nolint:errcheck // best effort, so that the cgroup can go

	fmt.Fprintf(os.Stderr, "bench: %s, %d CPUs, %d rounds of %v\n", kernelRelease(), runtime.NumCPU(), *rounds, *duration)
	t := &table{}
	steps := []struct {
		name string
		f    func(*env, *table) error
	}{
		{"kernel cost under real traffic", kernelCost},
		{"BPF_PROG_TEST_RUN per segment", testRunCost},
		{"user-space throughput (Go benchmarks)", userSpace},
		{"overhead on real traffic", overhead},
		{"loss at the highest connection rate", loss},
	}
	for _, s := range steps {
		if !strings.Contains(s.name, *only) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s...\n", s.name)
		if err := s.f(e, t); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	t.print(os.Stdout)
	return nil
}

// kernelCost measures run_time_ns / run_cnt of the collector's programs and
// of empty programs attached next to them, during connection churn and
// during a bulk transfer.
func kernelCost(e *env, t *table) error {
	c, err := startCollector(*binary, e.tmp, e.cgroup, e.home, e.sink, collectorOptions{})
	if err != nil {
		return err
	}
	defer c.Stop() //nolint:errcheck // the measurement is done; a failed stop changes none of it
	empty, err := attachEmpty(e.cgroup)
	if err != nil {
		return err
	}
	defer empty.close()
	progs := map[string]*ebpf.Program{"empty ingress": empty.ingress, "empty egress": empty.egress}
	for _, n := range []string{"netflow_ingress", "netflow_egress", "netflow_send", "netflow_recv"} {
		p, err := findProgram(n)
		if err != nil {
			return err
		}
		defer p.Close()
		progs[n] = p
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)) // off again when closed
	if err != nil {
		return fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()

	samples := map[string][]float64{}
	for range *rounds {
		for _, w := range []struct {
			name string
			run  func() error
		}{
			{"churn", func() error { _, err := churn(*duration, *clients, nil); return err }},
			{"bulk", func() error { _, err := bulk(*duration); return err }},
		} {
			before := map[string]progStats{}
			for n, p := range progs {
				if before[n], err = snapshot(p); err != nil {
					return err
				}
			}
			if err := w.run(); err != nil {
				return err
			}
			for n, p := range progs {
				after, err := snapshot(p)
				if err != nil {
					return err
				}
				samples[w.name+"/"+n] = append(samples[w.name+"/"+n], nsPerRun(before[n], after))
			}
		}
	}
	for _, w := range []string{"bulk", "churn"} {
		for _, dir := range []string{"ingress", "egress"} {
			prog, base := samples[w+"/netflow_"+dir], samples[w+"/empty "+dir]
			target := ""
			if w == "bulk" {
				target = "<= empty + 15 ns"
			}
			t.add(row{
				figure:   fmt.Sprintf("kernel ns/run, %s, %s (bpf_stats)", w, dir),
				measured: prog, baseline: base, unit: "ns", baseName: "empty program",
				target: target, met: metIf(w == "bulk", median(prog) <= median(base)+15),
				extra: fmt.Sprintf("+%.1f ns", median(prog)-median(base)),
			})
		}
	}
	for _, w := range []string{"bulk", "churn"} {
		for _, n := range []string{"netflow_send", "netflow_recv"} {
			t.add(row{figure: fmt.Sprintf("kernel ns/run, %s, %s (tracepoint, per TCP send/read)", w, strings.TrimPrefix(n, "netflow_")),
				measured: samples[w+"/"+n], unit: "ns"})
		}
	}
	mem, err := mapMemory(progs["netflow_ingress"])
	if err != nil {
		return err
	}
	t.add(row{figure: "kernel map memory (memlock)", measured: []float64{float64(mem) / (1 << 20)}, unit: "MiB",
		extra: "ring buffer, socket storage map, counters; socket storage itself is charged per socket"})
	return nil
}

func testRunCost(_ *env, t *table) error {
	figs, err := testRunFigures()
	if err != nil {
		return err
	}
	for _, f := range figs {
		t.add(row{figure: "test-run ns/run, " + f.name, measured: []float64{f.ns}, baseline: []float64{f.emptyNs},
			unit: "ns", baseName: "empty program", extra: fmt.Sprintf("+%.1f ns", f.ns-f.emptyNs)})
	}
	return nil
}

func userSpace(_ *env, t *table) error {
	res, err := runGoBenchmarks(*goCount)
	if err != nil {
		return err
	}
	full, lean := res["BenchmarkDecodeEnrichConvert/attributes=default"], res["BenchmarkDecodeEnrichConvert/attributes=minimal"]
	if full != nil {
		t.add(row{figure: "decode + DNS enrich + convert, per record", measured: full.nsPerOp, unit: "ns",
			baseline: []float64{1000}, baseName: "target", target: "<= 1000 ns (1M records/s per core)",
			met:   metIf(true, median(full.nsPerOp) <= 1000),
			extra: fmt.Sprintf("%.0f attributes, %.0f allocs", median(full.attributes), median(full.allocsPerOp))})
	}
	if lean != nil {
		t.add(row{figure: "decode + DNS enrich + convert, minimal attributes", measured: lean.nsPerOp, unit: "ns",
			extra: fmt.Sprintf("%.0f attributes, %.0f allocs", median(lean.attributes), median(lean.allocsPerOp))})
	}
	if full != nil && lean != nil {
		n := median(full.attributes) - median(lean.attributes)
		t.add(row{figure: "cost per optional attribute", unit: "ns",
			measured: []float64{(median(full.nsPerOp) - median(lean.nsPerOp)) / n},
			extra:    fmt.Sprintf("(default - minimal) / %.0f attributes", n)})
	}
	if b := res["BenchmarkRingToConsumer"]; b != nil {
		t.add(row{figure: "ring buffer -> consumer, whole receiver", measured: b.recordsPerSec, unit: "rec/s"})
	}
	return nil
}

// overhead runs the workloads without and with the collector, alternating.
func overhead(e *env, t *table) error {
	var connsWithout, connsWith, bulkWithout, bulkWith, rssIdle, rssLoad []float64
	for r := range *rounds {
		for _, withCollector := range []bool{r%2 == 1, r%2 == 0} { // alternate which goes first
			var c *loadtest.Collector
			if withCollector {
				var err error
				if c, err = startCollector(*binary, e.tmp, e.cgroup, e.home, e.sink, collectorOptions{discard: true}); err != nil {
					return err
				}
				time.Sleep(time.Second)
				if rss, err := c.RSS(); err == nil {
					rssIdle = append(rssIdle, float64(rss)/(1<<20))
				}
			}
			peak := sampleRSS(c)
			cr, err := churn(*duration, *clients, nil)
			if err != nil {
				return err
			}
			p := peak()
			bps, err := bulk(*duration)
			if err != nil {
				return err
			}
			if withCollector {
				connsWith = append(connsWith, cr.Rate())
				bulkWith = append(bulkWith, bps/1e9)
				rssLoad = append(rssLoad, p/(1<<20))
				if err := c.Stop(); err != nil {
					return err
				}
			} else {
				connsWithout = append(connsWithout, cr.Rate())
				bulkWithout = append(bulkWithout, bps/1e9)
			}
		}
	}
	t.add(row{figure: fmt.Sprintf("short connections/s, %d clients, with collector", *clients), measured: connsWith,
		baseline: connsWithout, baseName: "without", unit: "conn/s", target: "ratio >= 0.97",
		met: metIf(true, median(connsWith)/median(connsWithout) >= 0.97)})
	t.add(row{figure: "bulk throughput, one stream, with collector", measured: bulkWith, baseline: bulkWithout,
		baseName: "without", unit: "Gbit/s", target: "ratio >= 0.99", met: metIf(true, median(bulkWith)/median(bulkWithout) >= 0.99)})
	t.add(row{figure: "collector RSS, idle", measured: rssIdle, unit: "MiB"})
	t.add(row{figure: "collector RSS, peak under connection churn", measured: rssLoad, unit: "MiB", target: "< 100 MiB",
		met: metIf(true, slices.Max(rssLoad) < 100)})
	return nil
}

// sampleRSS samples the collector's RSS until the returned function is
// called, which returns the peak in bytes.
func sampleRSS(c *loadtest.Collector) func() float64 {
	if c == nil {
		return func() float64 { return 0 }
	}
	stop, done := make(chan struct{}), make(chan float64)
	go func() {
		var peak float64
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := c.RSS(); err == nil {
				peak = max(peak, float64(rss))
			}
			select {
			case <-stop:
				done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() float64 { close(stop); return <-done }
}

// loss runs connection churn as fast as the machine goes, with the default
// configuration, and counts records against connections; then finds the
// smallest ring buffer that loses nothing at that rate.
func loss(e *env, t *table) error {
	type result struct {
		conns, expected, delivered, duplicates int
		lost                                   float64
		rate                                   float64
	}
	measure := func(ring int, d time.Duration) (result, error) {
		c, err := startCollector(*binary, e.tmp, e.cgroup, e.home, e.sink, collectorOptions{ringBufferSize: ring})
		if err != nil {
			return result{}, err
		}
		defer c.Stop() //nolint:errcheck // the measurement is done; a failed stop changes none of it
		var mu sync.Mutex
		made := map[uint64]struct{}{}
		cr, err := churn(d, 2*runtime.NumCPU(), func(cookie uint64) {
			mu.Lock()
			made[cookie] = struct{}{}
			mu.Unlock()
		})
		if err != nil {
			return result{}, err
		}
		expected := len(made) // the client's socket and the server's
		var acc loadtest.Accounting
		deadline := time.Now().Add(15 * time.Second)
		for last := -1; time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			acc = e.sink.Account(made)
			if acc.Delivered >= expected || acc.Delivered == last {
				break
			}
			last = acc.Delivered
		}
		delivered, dups := acc.Delivered+acc.Duplicates, acc.Duplicates
		m, err := c.Metrics()
		if err != nil {
			return result{}, err
		}
		lost := m.Get("otelcol_netflowtcpend_records_lost")
		return result{int(cr.Conns), expected, delivered, dups, lost, cr.Rate()}, nil
	}

	r, err := measure(0, 10*time.Second)
	if err != nil {
		return err
	}
	t.add(row{figure: fmt.Sprintf("records delivered at max rate (%.0f conn/s, default config)", r.rate),
		measured: []float64{float64(r.delivered)}, baseline: []float64{float64(r.expected)}, baseName: "2 x connections",
		unit: "records", target: "all, none duplicated", met: metIf(true, r.delivered-r.duplicates == r.expected && r.duplicates == 0),
		extra: fmt.Sprintf("kernel lost %.0f, duplicated %d", r.lost, r.duplicates)})

	smallest := "none tried"
	for _, size := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20} {
		r, err := measure(size, 5*time.Second)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: ring %d KiB: %d of %d records, lost %.0f\n", size>>10, r.delivered, r.expected, r.lost)
		if r.lost == 0 && r.delivered == r.expected {
			smallest = fmt.Sprintf("%d KiB", size>>10)
			break
		}
		smallest = "more than 4 MiB"
	}
	t.add(row{figure: "smallest ring buffer losing nothing at max rate", text: smallest})
	return nil
}

func kernelRelease() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}
