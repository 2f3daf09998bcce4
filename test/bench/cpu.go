//go:build linux

package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

// The cost per unit of work: host-wide busy CPU (from /proc/stat) per
// connection of the churn and per call of the RPC workload, with nothing
// attached (the baseline), with empty cgroup_skb programs (the floor of any
// cgroup_skb design), with the collector, and with a close tracer
// (bpftrace, the peer). Throughput ratios hide cost in idle time (the
// loopback churn leaves some of the CPU idle); busy CPU per unit does not.
// Every round measures every variant, in an order that alternates from
// round to round.

// setup is what runs on the host while a workload is measured.
type setup struct {
	name  string
	start func(e *env) (running, error)
}

// running is a started setup.
type running struct {
	pid     int                     // its process, 0 for none
	records func() (float64, error) // records or lines it has written so far; nil: none
	rss     func() (int64, error)   // its resident memory; nil: none
	stop    func() error            // ends it
}

var (
	setupBaseline = setup{"baseline", func(*env) (running, error) {
		return running{stop: func() error { return nil }}, nil
	}}
	setupEmpty = setup{"empty cgroup_skb programs", func(e *env) (running, error) {
		p, err := attachEmpty(e.cgroup)
		if err != nil {
			return running{}, err
		}
		return running{stop: func() error { p.close(); return nil }}, nil
	}}
	setupCollector        = collectorSetup("collector", binary, collectorOptions{discard: true})
	setupCollectorPooling = collectorSetup("collector, pdata.useProtoPooling", binary,
		collectorOptions{discard: true, args: []string{"--feature-gates=pdata.useProtoPooling"}})
	setupCompare = collectorSetup("collector [compare]", compare, collectorOptions{discard: true})
	// setupMetrics is the collector with a metrics pipeline beside the
	// logs one: what the metrics cost.
	setupMetrics = collectorSetup("collector, logs + metrics", binary, collectorOptions{discard: true, metrics: true})
	setupTracer  = setup{"close tracer (bpftrace)", func(e *env) (running, error) {
		t, err := startTracer(e.tmp, e.home)
		if err != nil {
			return running{}, err
		}
		return running{
			pid: t.pid(), stop: func() error { _, err := t.stop(); return err },
			records: func() (float64, error) {
				b, err := os.ReadFile(t.out)
				return float64(strings.Count(string(b), "\n")), err
			},
		}, nil
	}}
)

// collectorSetup is the collector exporting nothing (the debug exporter at
// basic verbosity): its own cost, without an exporter's or a backend's.
func collectorSetup(name string, binary *string, opts collectorOptions) setup {
	return setup{name, func(e *env) (running, error) {
		c, err := startCollector(*binary, e.tmp, e.cgroup, e.home, e.sink, opts)
		if err != nil {
			return running{}, err
		}
		time.Sleep(time.Second) // past its start-time scan and first flush
		return running{
			pid: c.PID(), stop: c.Stop, rss: c.RSS,
			records: func() (float64, error) {
				m, err := c.Metrics()
				return m.Get("otelcol_receiver_accepted_log_records"), err
			},
		}, nil
	}}
}

// setupGOGC is the collector with GOGC=-gogc: less garbage collection
// for more memory.
func setupGOGC() setup {
	return collectorSetup("collector, GOGC="+*gogc, binary, collectorOptions{discard: true, env: []string{"GOGC=" + *gogc}})
}

// unitSample is one setup's measurement in one round.
type unitSample struct {
	units   float64       // connections or calls completed
	rate    float64       // units per second
	busy    time.Duration // host-wide busy CPU time in the window
	proc    time.Duration // the setup's own process's CPU time in the window
	records float64       // records (lines) it wrote in the window
	rss     float64       // its peak RSS in the window, bytes
	failed  int64         // connections that failed in the window
}

// workload is one kind of work whose cost per unit is measured.
type workload struct {
	name, unit string                               // e.g. "churn", "connection"
	run        func(time.Duration) (float64, error) // units completed
}

// tail is how long a window goes on after the workload, so that what the
// collector and the tracer do for the last units (they read at their next
// tick) is in it: the same for every setup.
const tail = 500 * time.Millisecond

// perUnit measures w under each setup, rounds times, interleaved; and the
// host's busy share with nothing running, before each round.
func perUnit(e *env, w workload, setups []setup) (map[string][]unitSample, []float64, error) {
	samples := map[string][]unitSample{}
	var idle []float64
	for r := range *rounds {
		h0, err := readHostCPU()
		if err != nil {
			return nil, nil, err
		}
		time.Sleep(time.Second)
		h1, err := readHostCPU()
		if err != nil {
			return nil, nil, err
		}
		idle = append(idle, busyShare(h0, h1))
		order := slices.Clone(setups)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			fmt.Fprintf(os.Stderr, "bench:   %s round %d/%d: %s (load %s)\n", w.name, r+1, *rounds, s.name, loadAverage())
			sample, err := measureUnit(e, w, s)
			if err != nil {
				return nil, nil, fmt.Errorf("%s, %s: %w", w.name, s.name, err)
			}
			samples[s.name] = append(samples[s.name], sample)
		}
	}
	return samples, idle, nil
}

func measureUnit(e *env, w workload, s setup) (unitSample, error) {
	run, err := s.start(e)
	if err != nil {
		return unitSample{}, err
	}
	out, err := measureWindow(w, run)
	// A connect that timed out (see churn) stalled a client for seconds
	// of the window: measure it again, once.
	for retry := 0; err == nil && out.failed > 0 && retry < 1; retry++ {
		fmt.Fprintf(os.Stderr, "bench:   %d connections failed in this window: measuring it again\n", out.failed)
		remeasured.Add(1)
		out, err = measureWindow(w, run)
	}
	if serr := run.stop(); err == nil {
		err = serr
	}
	return out, err
}

// remeasured counts the windows measured again.
var remeasured atomic.Int64

// measureWindow runs w once while run is running.
func measureWindow(w workload, run running) (unitSample, error) {
	var rec0, rec1 float64
	var p0, p1 time.Duration
	var err error
	if run.records != nil {
		if rec0, err = run.records(); err != nil {
			return unitSample{}, err
		}
	}
	var peak func() float64
	if run.rss != nil {
		peak = samplePeak(run.rss)
		defer func() {
			if peak != nil { // not read: an error cut the window short
				peak()
			}
		}()
	}
	if run.pid != 0 {
		if p0, err = loadtest.ProcessCPU(run.pid); err != nil {
			return unitSample{}, err
		}
	}
	failed0 := failedConns.Load()
	h0, err := readHostCPU()
	if err != nil {
		return unitSample{}, err
	}
	start := time.Now()
	units, err := w.run(*duration)
	if err != nil {
		return unitSample{}, err
	}
	elapsed := time.Since(start)
	time.Sleep(tail)
	h1, err := readHostCPU()
	if err != nil {
		return unitSample{}, err
	}
	out := unitSample{units: units, rate: units / elapsed.Seconds(), busy: busyTime(h0, h1),
		failed: failedConns.Load() - failed0}
	if run.pid != 0 {
		if p1, err = loadtest.ProcessCPU(run.pid); err != nil {
			return unitSample{}, err
		}
		out.proc = p1 - p0
	}
	if run.records != nil {
		if rec1, err = run.records(); err != nil {
			return unitSample{}, err
		}
		out.records = rec1 - rec0
	}
	if peak != nil {
		out.rss = peak()
		peak = nil
	}
	return out, nil
}

// samplePeak samples a size every 100 ms until the returned function is
// called, which returns the largest.
func samplePeak(size func() (int64, error)) func() float64 {
	stop, done := make(chan struct{}), make(chan float64)
	go func() {
		var peak float64
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := size(); err == nil {
				peak = max(peak, float64(v))
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

// Views of the samples.

func perUnitMicros(s []unitSample) []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = float64(x.busy.Microseconds()) / x.units
	}
	return out
}

func rates(s []unitSample) []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = x.rate
	}
	return out
}

// perRecordMicros is the setup's own CPU per record it wrote.
func perRecordMicros(s []unitSample) []float64 {
	var out []float64
	for _, x := range s {
		if x.records > 0 {
			out = append(out, float64(x.proc.Microseconds())/x.records)
		}
	}
	return out
}

func recordsPerUnit(s []unitSample) []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = x.records / x.units
	}
	return out
}

// paired is a[i]/b[i]: ratios of measurements made in the same round.
func paired(a, b []float64) []float64 {
	out := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		if b[i] != 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

func percents(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = 100 * x
	}
	return out
}

// costPerUnit is the step: churn and RPC under every setup.
func costPerUnit(e *env, t *table) error {
	restore, err := tracefsMounted()
	if err != nil {
		return err
	}
	defer restore()

	churnW := workload{"churn", "connection", func(d time.Duration) (float64, error) {
		r, err := runChurn(d, *clients, nil)
		return float64(r.Conns), err
	}}
	rpcW := workload{"rpc", "call", func(d time.Duration) (float64, error) {
		r, err := rpc(d, *rpcConns)
		return float64(r.Calls), err
	}}

	// Connection churn.
	churnSetups := []setup{setupBaseline, setupEmpty, setupCollector, setupTracer}
	if *metricsPipeline {
		churnSetups = append(churnSetups, setupMetrics)
	}
	if *pooling {
		churnSetups = append(churnSetups, setupCollectorPooling)
	}
	if *gogc != "" {
		churnSetups = append(churnSetups, setupGOGC())
	}
	if *compare != "" {
		churnSetups = append(churnSetups, setupCompare)
	}
	s, idle, err := perUnit(e, churnW, churnSetups)
	if err != nil {
		return err
	}
	base := perUnitMicros(s[setupBaseline.name])
	t.add(row{figure: "host busy, no workload, before each round", measured: percents(idle), unit: "% of all CPUs",
		extra: "the machine's other load, in the windows below too"})
	t.add(row{figure: "host CPU per connection, churn, baseline", measured: base, unit: "us",
		extra: fmt.Sprintf("%d clients, connect + 64 B request + 64 B response + close", *clients)})
	for _, su := range churnSetups[1:] {
		m := perUnitMicros(s[su.name])
		r := row{figure: "host CPU per connection, churn, " + su.name, measured: m, baseline: base, baseName: "baseline",
			unit: "us", ratios: paired(m, base)}
		if su.name == setupCollector.name {
			r.target, r.met = "ratio <= 1.03", metIf(true, median(r.ratios) <= 1.03)
		}
		r.extra = fmt.Sprintf("+%.2f us per connection", median(m)-median(base))
		t.add(r)
	}
	baseRate := rates(s[setupBaseline.name])
	for _, su := range churnSetups[1:] {
		m := rates(s[su.name])
		r := row{figure: "connections/s, churn, " + su.name, measured: m, baseline: baseRate, baseName: "baseline",
			unit: "conn/s", ratios: paired(m, baseRate)}
		if su.name == setupCollector.name {
			r.target, r.met = "ratio >= 0.97", metIf(true, median(r.ratios) >= 0.97)
		}
		t.add(r)
	}
	col := s[setupCollector.name]
	t.add(row{figure: "collector CPU per record, churn", measured: perRecordMicros(col), unit: "us",
		extra: fmt.Sprintf("its own process (receiver, pipeline, debug exporter); %.2f records per connection", median(recordsPerUnit(col)))})
	if *metricsPipeline {
		mc := s[setupMetrics.name]
		over := median(perRecordMicros(mc)) - median(perRecordMicros(col))
		t.add(row{figure: "collector CPU per record, churn, logs + metrics", measured: perRecordMicros(mc),
			baseline: perRecordMicros(col), baseName: "logs only", unit: "us", ratios: paired(perRecordMicros(mc), perRecordMicros(col)),
			target: "<= logs only + 0.3 us", met: metIf(true, over <= 0.3),
			extra: fmt.Sprintf("%+.2f us per record; one receiver in both pipelines, 10 s metric interval", over)})
	}
	if *pooling {
		pc := s[setupCollectorPooling.name]
		t.add(row{figure: "collector CPU per record, churn, pdata.useProtoPooling", measured: perRecordMicros(pc),
			baseline: perRecordMicros(col), baseName: "gate off", unit: "us", ratios: paired(perRecordMicros(pc), perRecordMicros(col))})
	}
	if *gogc != "" {
		gc := s[setupGOGC().name]
		var rss []float64
		for _, x := range gc {
			rss = append(rss, x.rss/(1<<20))
		}
		t.add(row{figure: "collector CPU per record, churn, GOGC=" + *gogc, measured: perRecordMicros(gc),
			baseline: perRecordMicros(col), baseName: "GOGC=100", unit: "us", ratios: paired(perRecordMicros(gc), perRecordMicros(col)),
			extra: fmt.Sprintf("RSS peak %s MiB", summary(rss))})
	}
	if *compare != "" {
		cc := s[setupCompare.name]
		t.add(row{figure: "collector CPU per record, churn [compare]", measured: perRecordMicros(cc),
			baseline: perRecordMicros(col), baseName: "collector", unit: "us", ratios: paired(perRecordMicros(cc), perRecordMicros(col))})
	}
	tr := s[setupTracer.name]
	t.add(row{figure: "close tracer CPU per line, churn", measured: perRecordMicros(tr), unit: "us",
		extra: fmt.Sprintf("bpftrace's own process; %.2f lines per connection (host-wide)", median(recordsPerUnit(tr)))})
	var rss []float64
	for _, x := range col {
		rss = append(rss, x.rss/(1<<20))
	}
	t.add(row{figure: "collector RSS, peak under connection churn", measured: rss, unit: "MiB", target: "< 100 MiB",
		met: metIf(true, slices.Max(rss) < 100)})

	// Request/response on long-lived connections.
	rpcSetups := []setup{setupBaseline, setupEmpty, setupCollector, setupTracer}
	if *compare != "" {
		rpcSetups = append(rpcSetups, setupCompare)
	}
	s, idle, err = perUnit(e, rpcW, rpcSetups)
	if err != nil {
		return err
	}
	base = perUnitMicros(s[setupBaseline.name])
	empty := perUnitMicros(s[setupEmpty.name])
	t.add(row{figure: "host busy, no workload, before each RPC round", measured: percents(idle), unit: "% of all CPUs"})
	t.add(row{figure: "host CPU per call, rpc, baseline", measured: base, unit: "us",
		extra: fmt.Sprintf("%d connections, 64 B request + 64 B response per call", *rpcConns)})
	t.add(row{figure: "host CPU per call, rpc, " + setupEmpty.name, measured: empty, baseline: base, baseName: "baseline",
		unit: "us", ratios: paired(empty, base), extra: fmt.Sprintf("+%.3f us per call", median(empty)-median(base))})
	m := perUnitMicros(s[setupCollector.name])
	t.add(row{figure: "host CPU per call, rpc, collector", measured: m, baseline: empty, baseName: "empty programs",
		unit: "us", ratios: paired(m, empty), target: "ratio <= 1.01", met: metIf(true, median(paired(m, empty)) <= 1.01),
		extra: fmt.Sprintf("%.3f of the baseline", median(paired(m, base)))})
	for _, su := range rpcSetups[3:] {
		m = perUnitMicros(s[su.name])
		r := row{figure: "host CPU per call, rpc, " + su.name, measured: m, baseline: base, baseName: "baseline",
			unit: "us", ratios: paired(m, base)}
		if su.name == setupCompare.name { // as the collector's row
			r.baseline, r.baseName, r.ratios = empty, "empty programs", paired(m, empty)
		}
		t.add(r)
	}
	baseRate = rates(s[setupBaseline.name])
	for _, su := range rpcSetups[1:] {
		m := rates(s[su.name])
		t.add(row{figure: "calls/s, rpc, " + su.name, measured: m, baseline: baseRate, baseName: "baseline",
			unit: "call/s", ratios: paired(m, baseRate)})
	}
	return nil
}
