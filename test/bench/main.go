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
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/churn"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testhello"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

var (
	binary          = flag.String("binary", "dist/otelcol-netflowtcpend", "the collector built by make build")
	rounds          = flag.Int("rounds", 5, "rounds of each interleaved comparison")
	duration        = flag.Duration("duration", 3*time.Second, "length of one workload run")
	clients         = flag.Int("clients", 4, "parallel clients of the connection workload")
	rpcConns        = flag.Int("rpc-conns", 8, "long-lived connections of the request/response workload")
	goCount         = flag.Int("gocount", 5, "runs of each Go benchmark")
	compare         = flag.String("compare", "", "another collector binary (say, an earlier commit's) measured next to -binary, interleaved, in the kernel and unit steps")
	gogc            = flag.String("gogc", "200", "also measure the collector with this GOGC under churn, as examples/ and deploy/ set it (\"\": not)")
	metricsPipeline = flag.Bool("metrics", true, "also measure the collector with a metrics pipeline beside the logs one under churn")
	pooling         = flag.Bool("pooling", true, "also measure the collector with the pdata.useProtoPooling feature gate under churn")
	only            = flag.String("only", "", "run only these steps, comma-separated: kernel, test-run, user, unit, overhead, loss")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode()) // the namespaced run said why
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// netnsEnv is set in the run of this program inside the network namespace
// it makes for itself.
const netnsEnv = "NETFLOWTCPEND_BENCH_NETNS"

// inOwnNetns runs this program again in a network namespace of its own,
// where the workloads, the collector and the sink talk over a loopback
// that no firewall rule touches: the host's rules may turn on connection
// tracking (podman's do), which adds its own cost to every connection, and
// whose table (262,144 entries, each held 120 s after its connection's
// end) connection churn at these rates fills in half a minute, after which
// the kernel drops new connections' SYNs. The run there checks that
// connections are not tracked (checkNoConnTracking) before it measures.
func inOwnNetns() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	return cmd.Run()
}

// loopbackUp brings up lo in this (new) network namespace.
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(lo)
}

// env is what every phase uses.
type env struct {
	tmp, cgroup, home string
	sink              *loadtest.Sink
	clientHello       []byte // crypto/tls's, for TLS churn
}

func run() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it attaches BPF programs and moves itself into a cgroup (sudo make bench)")
	}
	if _, err := os.Stat(*binary); err != nil {
		return fmt.Errorf("%w: run make build first", err)
	}
	if os.Getenv(netnsEnv) == "" {
		return inOwnNetns()
	}
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("bring up lo in the bench's network namespace: %w", err)
	}
	if err := checkNoConnTracking(); err != nil {
		return err
	}
	root, err := cgroupv2.Root()
	if err != nil {
		return err
	}
	e := &env{}
	if e.clientHello, err = testhello.Capture(&tls.Config{ServerName: "www.example.com"}); err != nil {
		return fmt.Errorf("a ClientHello for TLS churn: %w", err)
	}
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
	if e.home, err = testnet.OwnCgroup(root); err != nil {
		return err
	}
	if err := testnet.MoveSelf(e.cgroup); err != nil {
		return err
	}
	defer testnet.MoveSelf(e.home) //nolint:errcheck // best effort, so that the cgroup can go

	started := time.Now()
	loadAtStart := loadAverage()
	fmt.Fprintf(os.Stderr, "bench: %s, %d CPUs, %d rounds of %v, load average %s\n", kernelRelease(), runtime.NumCPU(), *rounds, *duration, loadAtStart)
	t := &table{}
	steps := []struct {
		key, name string
		f         func(*env, *table) error
	}{
		{"kernel", "kernel cost under real traffic (bpf_stats)", kernelCost},
		{"test-run", "BPF_PROG_TEST_RUN per segment", testRunCost},
		{"user", "user-space cost per record (Go benchmarks)", userSpace},
		{"unit", "cost per unit of work (host CPU, interleaved)", costPerUnit},
		{"overhead", "overhead on bulk throughput", overhead},
		{"loss", "loss at the highest connection rate", loss},
	}
	for _, s := range steps {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), s.key) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s... (at %v)\n", s.name, time.Since(started).Round(time.Second))
		if err := s.f(e, t); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	fmt.Printf("make bench, %s, %s, %s, %d CPUs (%s), %d rounds of %v; load average %s at the start, %s at the end; %s; workloads in a network namespace of their own; %d connections failed (timed out) in all, %d windows measured again for it\n\n",
		started.Format("2006-01-02 15:04"), kernelRelease(), cpuModel(), runtime.NumCPU(), hypervisor(), *rounds, *duration,
		loadAtStart, loadAverage(), time.Since(started).Round(time.Second), failedConns.Load(), remeasured.Load())
	t.print(os.Stdout)
	return nil
}

// cpuModel returns /proc/cpuinfo's first model name.
func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// hypervisor says whether this is a virtual machine.
func hypervisor() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	if strings.Contains(string(b), " hypervisor") {
		return "virtual"
	}
	return "physical"
}

// kernelCost measures run_time_ns / run_cnt of every program the
// collector attached and of empty programs attached next to them (empty
// cgroup_skb programs on the same cgroup, an empty program on each of its
// other hooks), during connection churn, a bulk transfer and
// request/response calls. Each round starts the collector afresh (and the
// -compare one, in alternating order).
func kernelCost(e *env, t *table) error {
	binaries := []string{*binary}
	if *compare != "" {
		binaries = append(binaries, *compare)
	}
	figs := map[string]map[string]*kernelFigure{} // binary -> workload/program -> figure
	var order []kernelProgram                     // the programs, as the first collector attached them
	var mem uint64
	for r := range *rounds {
		bins := slices.Clone(binaries)
		if r%2 == 1 {
			slices.Reverse(bins)
		}
		for _, b := range bins {
			if figs[b] == nil {
				figs[b] = map[string]*kernelFigure{}
			}
			progs, m, err := kernelRound(e, b, figs[b])
			if err != nil {
				return err
			}
			if order == nil && b == *binary {
				order, mem = progs, m
			}
		}
	}
	unitName := map[string]string{"churn": "connection", "tlschurn": "connection", "bulk": "64 KiB", "rpc": "call"}
	for _, w := range []string{"bulk", "churn", "tlschurn", "rpc"} {
		for _, b := range binaries {
			label := ""
			if b != *binary {
				label = " [compare]"
			}
			for _, m := range kernelPrograms(order, figs[b]) {
				f := figs[b][w+"/"+m.name]
				if f == nil || median(f.runsPerUnit) < 0.01 {
					continue // did not run under this workload (but for other work on the host)
				}
				r := row{figure: fmt.Sprintf("kernel ns/run, %s, %s (%s)%s", w, m.name, m.hook, label), measured: f.nsPerRun,
					unit: "ns", extra: fmt.Sprintf("%.2f runs per %s", median(f.runsPerUnit), unitName[w])}
				if len(f.emptyNsPerRun) > 0 {
					r.baseline, r.baseName = f.emptyNsPerRun, "empty program"
					r.ratios = paired(f.nsPerRun, f.emptyNsPerRun)
					over := median(f.nsPerRun) - median(f.emptyNsPerRun)
					r.extra = fmt.Sprintf("+%.1f ns; ", over) + r.extra
					if strings.HasPrefix(m.hook, "cgroup_skb") && label == "" {
						switch w {
						case "bulk":
							r.target, r.met = "<= empty + 15 ns", metIf(true, over <= 15)
						case "churn":
							r.target, r.met = "<= empty + 50 ns", metIf(true, over <= 50)
						}
					}
				}
				t.add(r)
			}
		}
	}
	// The kernel side per connection: every program's time above its
	// empty program, summed round by round.
	perConnOver := map[string][]float64{}
	for _, b := range binaries {
		all, fallback := overPerUnit(figs[b], "churn", nil), overPerUnit(figs[b], "churn", isFallback)
		perConnOver[b] = all
		r := row{figure: "kernel us per connection above empty programs, churn, all programs", measured: all, unit: "us",
			extra: fmt.Sprintf("%.2f us of it the fallback's tracepoints, which kernels with fexit do not run", median(fallback))}
		if b == *binary {
			r.target, r.met = "<= 1.5 us", metIf(true, median(all) <= 1.5)
		} else {
			r.figure += " [compare]"
			r.baseline, r.baseName, r.ratios = perConnOver[*binary], "this build", paired(all, perConnOver[*binary])
		}
		t.add(r)
	}
	// What a connection that starts with a ClientHello adds in the
	// cgroup_skb programs: their ns per connection under TLS churn less
	// under plain churn (ns per run times runs per connection, summed).
	perConn := func(w string) float64 {
		sum := 0.0
		for _, m := range kernelPrograms(order, figs[*binary]) {
			if f := figs[*binary][w+"/"+m.name]; f != nil && strings.HasPrefix(m.hook, "cgroup_skb") {
				sum += median(f.nsPerRun) * median(f.runsPerUnit)
			}
		}
		return sum
	}
	if plain, tls := perConn("churn"), perConn("tlschurn"); plain > 0 && tls > 0 {
		t.add(row{figure: "kernel ns per connection, cgroup_skb programs, TLS churn", measured: []float64{tls}, unit: "ns",
			baseline: []float64{plain}, baseName: "plain churn",
			extra: fmt.Sprintf("+%.0f ns per connection for its ClientHello (both sockets: the copy into the ring buffer)", tls-plain)})
	}
	t.add(row{figure: "kernel map memory (memlock)", measured: []float64{float64(mem) / (1 << 20)}, unit: "MiB",
		extra: "ring buffer, socket storage map, counters; socket storage itself is charged per socket"})
	return nil
}

// overPerUnit is, round by round, the microseconds per unit of workload w
// that the programs of figs (those that keep passes, or all) spend above
// their empty programs: (ns per run - the empty program's) x runs per unit,
// summed. A program without an empty program beside it counts whole.
func overPerUnit(figs map[string]*kernelFigure, w string, keep func(kernelProgram) bool) []float64 {
	var sums []float64
	for key, f := range figs {
		if !strings.HasPrefix(key, w+"/") || (keep != nil && !keep(f.program)) {
			continue
		}
		for i := range f.nsPerRun {
			over := f.nsPerRun[i]
			if i < len(f.emptyNsPerRun) {
				over -= f.emptyNsPerRun[i]
			}
			if i >= len(sums) {
				sums = append(sums, make([]float64, i+1-len(sums))...)
			}
			sums[i] += over * f.runsPerUnit[i] / 1000
		}
	}
	return sums
}

// isFallback tells the tracepoints that name an accepted socket's owner
// on kernels without fexit (netflow.c: netflow_send, netflow_recv).
func isFallback(p kernelProgram) bool {
	return p.hook == "tp_btf/tcp_sendmsg_locked" || p.hook == "tp_btf/tcp_rcv_space_adjust"
}

// kernelProgram is one program of a collector, by name and hook.
type kernelProgram struct{ name, hook string }

// kernelPrograms is order, then the programs of figs that are not in it
// (another binary may attach others).
func kernelPrograms(order []kernelProgram, figs map[string]*kernelFigure) []kernelProgram {
	out := slices.Clone(order)
	var more []kernelProgram
	for _, f := range figs {
		if !slices.Contains(out, f.program) && !slices.Contains(more, f.program) {
			more = append(more, f.program)
		}
	}
	slices.SortFunc(more, func(a, b kernelProgram) int { return strings.Compare(a.name, b.name) })
	return append(out, more...)
}

// kernelFigure is one program's samples under one workload.
type kernelFigure struct {
	program                              kernelProgram
	nsPerRun, emptyNsPerRun, runsPerUnit []float64
}

// kernelRound starts the collector binary, attaches an empty program next
// to each of its programs and measures them under each workload once,
// adding to figs; it returns the collector's programs and the memory of
// its maps.
func kernelRound(e *env, binary string, figs map[string]*kernelFigure) ([]kernelProgram, uint64, error) {
	c, err := startCollector(binary, e.tmp, e.cgroup, e.home, e.sink, collectorOptions{})
	if err != nil {
		return nil, 0, err
	}
	defer c.Stop() //nolint:errcheck // the measurement is done; a failed stop changes none of it
	empty, err := attachEmpty(e.cgroup)
	if err != nil {
		return nil, 0, err
	}
	defer empty.close()
	ours, err := collectorPrograms(c.PID())
	if err != nil {
		return nil, 0, err
	}
	type measured struct {
		kernelProgram
		prog, empty *ebpf.Program
	}
	var progs []measured
	var names []kernelProgram
	var mem uint64
	for _, a := range ours {
		defer a.prog.Close()
		m := measured{kernelProgram: kernelProgram{a.name, a.hook}, prog: a.prog}
		switch {
		case a.hook == "cgroup_skb/ingress":
			m.empty = empty.ingress
			if mem, err = mapMemory(a.prog); err != nil {
				return nil, 0, err
			}
		case a.hook == "cgroup_skb/egress":
			m.empty = empty.egress
		case a.hook == "cgroup/sock_create":
			p, l, err := emptySockCreate(e.cgroup)
			if err != nil {
				return nil, 0, err
			}
			defer p.Close()
			defer l.Close()
			m.empty = p
		case a.tracing:
			p, l, err := emptyTracing(a)
			if err != nil {
				return nil, 0, err
			}
			defer p.Close()
			defer l.Close()
			m.empty = p
		}
		progs = append(progs, m)
		names = append(names, m.kernelProgram)
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)) // off again when closed
	if err != nil {
		return nil, 0, fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()

	workloads := []struct {
		name string
		run  func() (float64, error) // units of work done
	}{
		{"churn", func() (float64, error) { r, err := runChurn(*duration, *clients, nil); return float64(r.Conns), err }},
		// The same, each connection starting with a real ClientHello
		// (crypto/tls's, about 1,500 bytes): what TLS adds per connection.
		{"tlschurn", func() (float64, error) {
			r, err := runChurnWith(*duration, churn.Options{Clients: *clients, Request: e.clientHello})
			return float64(r.Conns), err
		}},
		{"bulk", func() (float64, error) {
			bps, err := bulk(*duration)
			return bps * duration.Seconds() / 8 / (64 << 10), err
		}},
		{"rpc", func() (float64, error) { r, err := rpc(*duration, *rpcConns); return float64(r.Calls), err }},
	}
	for _, w := range workloads {
		before := map[*ebpf.Program]progStats{}
		for _, m := range progs {
			for _, p := range []*ebpf.Program{m.prog, m.empty} {
				if p != nil {
					if before[p], err = snapshot(p); err != nil {
						return nil, 0, err
					}
				}
			}
		}
		units, err := w.run()
		if err != nil {
			return nil, 0, err
		}
		for _, m := range progs {
			f := figs[w.name+"/"+m.name]
			if f == nil {
				f = &kernelFigure{program: m.kernelProgram}
				figs[w.name+"/"+m.name] = f
			}
			after, err := snapshot(m.prog)
			if err != nil {
				return nil, 0, err
			}
			f.nsPerRun = append(f.nsPerRun, nsPerRun(before[m.prog], after))
			f.runsPerUnit = append(f.runsPerUnit, float64(after.runs-before[m.prog].runs)/units)
			if m.empty != nil {
				after, err := snapshot(m.empty)
				if err != nil {
					return nil, 0, err
				}
				f.emptyNsPerRun = append(f.emptyNsPerRun, nsPerRun(before[m.empty], after))
			}
		}
	}
	return names, mem, nil
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
	full := res["BenchmarkDecodeEnrichConvert/attributes=default"]
	lean := res["BenchmarkDecodeEnrichConvert/attributes=minimal"]
	pool := res["BenchmarkDecodeEnrichConvert/attributes=default,pooling"]
	if full != nil {
		t.add(row{figure: "decode + DNS enrich + convert, CPU per record", measured: full.cpuNsPerOp, unit: "ns",
			baseline: []float64{1000}, baseName: "target", target: "<= 1000 ns (1M records/s per core)",
			met: metIf(true, median(full.cpuNsPerOp) <= 1000),
			extra: fmt.Sprintf("default attributes (%.0f); all threads, GC included; %.0f ns/op wall; %.0f allocs, %.0f B per record",
				median(full.attributes), median(full.nsPerOp), median(full.allocsPerOp), median(full.bytesPerOp))})
	}
	if lean != nil {
		t.add(row{figure: "decode + DNS enrich + convert, CPU per record, minimal attributes", measured: lean.cpuNsPerOp, unit: "ns",
			extra: fmt.Sprintf("%.0f attributes; %.0f ns/op wall; %.0f allocs, %.0f B per record",
				median(lean.attributes), median(lean.nsPerOp), median(lean.allocsPerOp), median(lean.bytesPerOp))})
	}
	if full != nil && lean != nil {
		n := median(full.attributes) - median(lean.attributes)
		t.add(row{figure: "cost per optional attribute", unit: "ns",
			measured: []float64{(median(full.cpuNsPerOp) - median(lean.cpuNsPerOp)) / n},
			extra:    fmt.Sprintf("(default - minimal) / %.0f attributes, CPU", n)})
	}
	if pool != nil && full != nil {
		t.add(row{figure: "decode + DNS enrich + convert, CPU per record, pdata.useProtoPooling", measured: pool.cpuNsPerOp,
			baseline: full.cpuNsPerOp, baseName: "gate off", unit: "ns",
			extra: fmt.Sprintf("batches released as the pipeline releases them; %.0f ns/op wall; %.0f allocs, %.0f B per record",
				median(pool.nsPerOp), median(pool.allocsPerOp), median(pool.bytesPerOp))})
	}
	if m := res["BenchmarkMetricsSink"]; m != nil {
		t.add(row{figure: "metrics pipeline beside the logs, CPU per record", measured: m.cpuNsPerOp, unit: "ns",
			target: "<= 300 ns, no allocation", met: metIf(true, median(m.cpuNsPerOp) <= 300 && median(m.allocsPerOp) == 0),
			extra: fmt.Sprintf("receiver BenchmarkMetricsSink: the end's values and attributes, counted in its series; %.0f ns/op wall; %.0f allocs, %.0f B per record",
				median(m.nsPerOp), median(m.allocsPerOp), median(m.bytesPerOp))})
	}
	if m := res["BenchmarkDecodeEnrichConvert/attributes=default,metrics"]; m != nil && full != nil {
		t.add(row{figure: "decode + DNS enrich + convert + metrics, CPU per record", measured: m.cpuNsPerOp, unit: "ns",
			baseline: full.cpuNsPerOp, baseName: "logs only", ratios: paired(m.cpuNsPerOp, full.cpuNsPerOp),
			target: "no more allocations than logs only", met: metIf(true, median(m.allocsPerOp) <= median(full.allocsPerOp)),
			extra: fmt.Sprintf("%+.0f ns per record (noisier than the row above); %.0f allocs, %.0f B per record",
				median(m.cpuNsPerOp)-median(full.cpuNsPerOp), median(m.allocsPerOp), median(m.bytesPerOp))})
	}
	for _, name := range []string{"BenchmarkAdd/attributes=default", "BenchmarkAdd/attributes=peer_prefix,executable"} {
		if b := res[name]; b != nil {
			t.add(row{figure: "metrics aggregation per record, " + strings.TrimPrefix(name, "BenchmarkAdd/"), measured: b.nsPerOp, unit: "ns",
				target: "no allocation", met: metIf(true, median(b.allocsPerOp) == 0),
				extra: fmt.Sprintf("internal/connmetrics BenchmarkAdd; %.0f allocs, %.0f B per record", median(b.allocsPerOp), median(b.bytesPerOp))})
		}
	}
	if b := res["BenchmarkTLSNames"]; b != nil {
		t.add(row{figure: "TLS ClientHello decode + join + take, CPU per socket", measured: b.cpuNsPerOp, unit: "ns",
			extra: fmt.Sprintf("crypto/tls's ClientHello (about 1,500 bytes) in one piece; %.0f allocs, %.0f B per socket",
				median(b.allocsPerOp), median(b.bytesPerOp))})
	}
	if b := res["BenchmarkRingToConsumer"]; b != nil {
		t.add(row{figure: "ring buffer -> consumer, whole receiver", measured: b.recordsPerSec, unit: "rec/s",
			extra: fmt.Sprintf("%.0f ns CPU per record", median(b.cpuNsPerOp))})
	}
	return nil
}

// overhead runs the bulk transfer without and with the collector,
// alternating. (Connection churn and calls are measured per unit of work,
// in costPerUnit.)
func overhead(e *env, t *table) error {
	var bulkWithout, bulkWith, rssIdle []float64
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
			bps, err := bulk(*duration)
			if err != nil {
				return err
			}
			if withCollector {
				bulkWith = append(bulkWith, bps/1e9)
				if err := c.Stop(); err != nil {
					return err
				}
			} else {
				bulkWithout = append(bulkWithout, bps/1e9)
			}
		}
	}
	ratios := paired(bulkWith, bulkWithout)
	t.add(row{figure: "bulk throughput, one stream, with collector", measured: bulkWith, baseline: bulkWithout,
		baseName: "without", unit: "Gbit/s", ratios: ratios, target: "ratio >= 0.99", met: metIf(true, median(ratios) >= 0.99)})
	t.add(row{figure: "collector RSS, idle", measured: rssIdle, unit: "MiB"})
	return nil
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
		cr, err := runChurn(d, 2*runtime.NumCPU(), func(cookie uint64) {
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
