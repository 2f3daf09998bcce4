//go:build linux

// Command soak runs the collector with examples/production.yaml for a long
// time under steady connection churn, each connection after a DNS lookup
// against a local resolver, exporting over OTLP/HTTP to an endpoint here,
// and says whether it stayed healthy: RSS flat within 10% after the
// warm-up (the means of one-minute windows of per-second samples: single
// samples swing with each GC cycle), exactly one record per socket end
// (matched by socket cookie),
// nothing lost. It prints one line per interval and a verdict, and exits 1
// when any check fails. `make soak` runs it as root; it is not part of make
// test.
//
// The churn runs in a worker process (this executable again) inside a
// cgroup of its own, which the collector watches, and inside a network
// namespace of its own, where dnsmasq answers for the names on 127.0.53.1:53
// and the churn's server listens on every address the names point to
// (127.1.0.0/16, all on lo).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/churn"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

var (
	binary   = flag.String("binary", "dist/otelcol-netflowtcpend", "the collector built by make build")
	config   = flag.String("config", "examples/production.yaml", "the collector's configuration (OTLP_ENDPOINT is set to the soak's endpoint)")
	duration = flag.Duration("duration", 10*time.Minute, "how long the churn runs")
	warmup   = flag.Duration("warmup", 0, "RSS before this is not judged (0: a fifth of -duration, at most 2m)")
	interval = flag.Duration("interval", 10*time.Second, "time between printed lines")
	rate     = flag.Float64("rate", 1000, "connections per second (each after a DNS lookup)")
	clients  = flag.Int("clients", 4, "parallel clients")
	names    = flag.Int("names", 4096, "distinct names (and addresses) the clients look up in turn")
	maxAddrs = flag.Int("dns-max-addresses", 2048, "the receiver's dns.max_addresses: fewer than -names, so that the cache evicts")
	flatness = flag.Float64("rss-flat", 0.10, "largest allowed (max - min) / min of the RSS window means after the warm-up")
	window   = flag.Duration("rss-window", time.Minute, "RSS is averaged over windows this long (GC cycles make single samples swing)")
)

const resolver = "127.0.53.1"

func main() {
	loadtest.RunWorkerIfAsked()
	flag.Parse()
	ok, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// sample is one second of the collector's life.
type sample struct {
	at  time.Duration
	rss float64
}

func run() (bool, error) {
	if os.Geteuid() != 0 {
		return false, errors.New("needs root: the collector attaches BPF programs, and the soak makes a cgroup and a network namespace (sudo make soak)")
	}
	if _, err := os.Stat(*binary); err != nil {
		return false, fmt.Errorf("%w: run make build first", err)
	}
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		return false, errors.New("dnsmasq is missing (Debian: dnsmasq-base; make soak installs it)")
	}
	if *names > 65000 {
		return false, errors.New("-names: at most 65000")
	}
	if *warmup == 0 {
		*warmup = min(*duration/5, 2*time.Minute)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tmp, err := os.MkdirTemp("", "netflowtcpend-soak")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	root, err := cgroupv2.Root()
	if err != nil {
		return false, err
	}
	cgroup := filepath.Join(root, fmt.Sprintf("netflowtcpend-soak-%d", os.Getpid()))
	if err := os.Mkdir(cgroup, 0o755); err != nil {
		return false, err
	}
	defer os.Remove(cgroup)
	ns, err := testnet.OpenNetns()
	if err != nil {
		return false, err
	}
	defer ns.Close()

	// The names and the resolver.
	var hosts strings.Builder
	var list []string
	for i := range *names {
		name := fmt.Sprintf("n%d.soak.test", i)
		list = append(list, name)
		fmt.Fprintf(&hosts, "127.1.%d.%d %s\n", i/250, i%250+1, name)
	}
	hostsFile := filepath.Join(tmp, "hosts")
	if err := os.WriteFile(hostsFile, []byte(hosts.String()), 0o600); err != nil {
		return false, err
	}
	dns := exec.Command(dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--addn-hosts="+hostsFile, "--user=root", "--pid-file=", "--log-facility=-",
		"--bind-interfaces", "--listen-address="+resolver, "--port=53", "--local-ttl=300", "--dns-forward-max=1000")
	var dnsLog strings.Builder
	dns.Stdout, dns.Stderr = &dnsLog, &dnsLog
	if err := ns.Start(dns); err != nil {
		return false, err
	}
	defer func() { _ = dns.Process.Kill(); _ = dns.Wait() }()
	server := netip.AddrPortFrom(netip.MustParseAddr(resolver), 53)
	if err := waitForResolver(ns, server, list[0]); err != nil {
		return false, fmt.Errorf("%w; dnsmasq said: %s", err, dnsLog.String())
	}

	sink, err := loadtest.NewSink()
	if err != nil {
		return false, err
	}
	defer sink.Close()
	col, err := loadtest.StartCollector(loadtest.CollectorOptions{
		Binary: *binary,
		Configs: []string{*config,
			"yaml:receivers::netflow_tcp_end::cgroup_path: " + cgroup,
			fmt.Sprintf("yaml:receivers::netflow_tcp_end::dns::max_addresses: %d", *maxAddrs),
		},
		Env: append([]string{"OTLP_ENDPOINT=http://" + sink.Addr()}, loadtest.ProductionEnv...),
	})
	if err != nil {
		return false, err
	}
	defer col.Kill()

	worker, err := loadtest.StartWorker(cgroup, ns, churn.Options{
		Clients: *clients, Rate: *rate, Listen: netip.MustParseAddrPort("0.0.0.0:0"),
		DNS: &churn.DNSOptions{Server: server, Names: list},
	})
	if err != nil {
		return false, err
	}
	defer worker.Kill()

	fmt.Printf("soak: %v of %.0f connections/s (%d clients), each after a DNS lookup of one of %d names; "+
		"collector %s with %s (pid %d), dns.max_addresses %d; RSS judged after %v\n",
		*duration, *rate, *clients, *names, *binary, *config, col.PID(), *maxAddrs, *warmup)
	fmt.Printf("%8s %9s %10s %10s %8s %8s %9s %6s %7s %8s %9s %7s\n",
		"time", "conn/s", "sockets", "records", "behind", "rss MiB", "heap MiB", "cpu %", "lost", "dns lost", "dns cache", "queue")

	start := time.Now()
	var samples []sample
	var lastSockets int
	var lastCPU float64
	lastPrint := start
	end := start.Add(*duration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	interrupted := false
	for time.Now().Before(end) && !interrupted {
		select {
		case <-ctx.Done():
			interrupted = true
		case <-tick.C:
		}
		rss, err := col.RSS()
		if err != nil {
			return false, fmt.Errorf("the collector is gone: %w\n%s", err, col.Log())
		}
		samples = append(samples, sample{at: time.Since(start), rss: float64(rss)})
		if time.Since(lastPrint) < *interval && time.Now().Before(end) && !interrupted {
			continue
		}
		m, err := col.Metrics()
		if err != nil {
			return false, err
		}
		sockets := worker.SocketCount()
		cpu := m.Get("otelcol_process_cpu_seconds")
		fmt.Printf("%8s %9.0f %10d %10d %8d %8.1f %9.1f %6.1f %7.0f %8.0f %9.0f %7.0f\n",
			time.Since(start).Round(time.Second), float64(sockets-lastSockets)/2/time.Since(lastPrint).Seconds(),
			sockets, sink.Records(), int64(sockets)-sink.Records(), float64(rss)/(1<<20),
			m.Get("otelcol_process_runtime_heap_alloc_bytes")/(1<<20), 100*(cpu-lastCPU)/time.Since(lastPrint).Seconds(),
			m.Get("otelcol_netflowtcpend_records_lost"),
			m.Get("otelcol_netflowtcpend_dns_messages_lost"), m.Get("otelcol_netflowtcpend_dns_cache_addresses"),
			m.Get("otelcol_exporter_queue_size"))
		lastSockets, lastPrint, lastCPU = sockets, time.Now(), cpu
	}
	res, err := worker.Stop()
	if err != nil {
		return false, err
	}
	made := worker.Sockets()

	// Everything in flight arrives: wait until every socket has its record,
	// or nothing moves for 30 s.
	var acc loadtest.Accounting
	for last, still := -1, time.Now(); ; time.Sleep(500 * time.Millisecond) {
		acc = sink.Account(made)
		if acc.Missing == 0 {
			break
		}
		if acc.Delivered != last {
			last, still = acc.Delivered, time.Now()
		} else if time.Since(still) > 30*time.Second {
			break
		}
	}
	m, err := col.Metrics()
	if err != nil {
		return false, err
	}
	stopErr := col.Stop()

	// The verdict. RSS: the mean of each whole window after the warm-up.
	var judged []float64
	var sum float64
	var n int
	for _, s := range samples {
		if s.at < *warmup {
			continue
		}
		sum, n = sum+s.rss, n+1
		if s.at-*warmup >= time.Duration(len(judged)+1)**window {
			judged = append(judged, sum/float64(n))
			sum, n = 0, 0
		}
	}
	checks := []struct {
		name string
		ok   bool
		says string
	}{
		{"ran the whole time", !interrupted, fmt.Sprintf("%v of %v", time.Since(start).Round(time.Second), *duration)},
		{"RSS flat after the warm-up", len(judged) > 1 && (slices.Max(judged)-slices.Min(judged))/slices.Min(judged) <= *flatness,
			rssSays(judged, samples, *flatness)},
		{"one record per socket end", acc.Sockets >= int(2*res.Conns) && acc.Missing == 0 && acc.Duplicates == 0 && acc.Unexpected == 0,
			fmt.Sprintf("%d connections, %d sockets, %d with a record; %d missing, %d duplicated, %d of sockets not made",
				res.Conns, acc.Sockets, acc.Delivered, acc.Missing, acc.Duplicates, acc.Unexpected)},
		{"nothing lost", m.Get("otelcol_netflowtcpend_records_lost")+m.Get("otelcol_netflowtcpend_dns_messages_lost")+
			m.Get("otelcol_netflowtcpend_records_dropped")+m.Get("otelcol_exporter_send_failed_log_records") == 0,
			fmt.Sprintf("kernel lost %.0f records and %.0f DNS messages; receiver dropped %.0f; exporter failed %.0f",
				m.Get("otelcol_netflowtcpend_records_lost"), m.Get("otelcol_netflowtcpend_dns_messages_lost"),
				m.Get("otelcol_netflowtcpend_records_dropped"), m.Get("otelcol_exporter_send_failed_log_records"))},
		{"clean stop", stopErr == nil, fmt.Sprint(errOr(stopErr, "SIGTERM: exited 0"))},
	}
	if res.Errors > 0 {
		fmt.Printf("\n%d lookups or connections failed (their sockets count like any other); the first: %s", res.Errors, res.FirstError)
	}
	fmt.Printf("\n%d connections in %.0f s (%.0f/s), %d DNS lookups; records with a domain name: %d of %d (%.2f%%); "+
		"DNS cache %.0f addresses (max %d), %.0f evicted; pipeline refusals (per call) %.0f\n",
		res.Conns, res.Seconds, res.Rate(), res.Lookups, sink.Named(), sink.Records(),
		100*float64(sink.Named())/max(1, float64(sink.Records())), m.Get("otelcol_netflowtcpend_dns_cache_addresses"),
		*maxAddrs, m.Get("otelcol_netflowtcpend_dns_cache_evictions"), m.Get("otelcol_receiver_refused_log_records"))
	pass := true
	for _, c := range checks {
		mark := "PASS"
		if !c.ok {
			mark, pass = "FAIL", false
		}
		fmt.Printf("%s  %-28s %s\n", mark, c.name, c.says)
	}
	if pass {
		fmt.Println("soak: PASS")
	} else {
		fmt.Println("soak: FAIL")
		if !strings.Contains(col.Log(), "Everything is ready") {
			fmt.Println(col.Log())
		}
	}
	return pass, nil
}

func waitForResolver(ns *testnet.Netns, server netip.AddrPort, name string) error {
	var err error
	for range 50 {
		err = ns.Do(func() error { _, err := churn.Lookup(server, name, 1); return err })
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the resolver never answered: %w", err)
}

func rssSays(judged []float64, samples []sample, flat float64) string {
	if len(judged) < 2 {
		return fmt.Sprintf("too short to judge: %d windows of %v after the warm-up", len(judged), *window)
	}
	lo, hi := slices.Min(judged), slices.Max(judged)
	var means []string
	for _, m := range judged {
		means = append(means, fmt.Sprintf("%.1f", m/(1<<20)))
	}
	peak := 0.0
	for _, s := range samples {
		peak = max(peak, s.rss)
	}
	return fmt.Sprintf("means of %v windows %s MiB: %+.1f%% (at most %.0f%%); highest sample %.1f MiB",
		*window, strings.Join(means, ", "), 100*(hi-lo)/lo, 100*flat, peak/(1<<20))
}

func errOr(err error, s string) any {
	if err != nil {
		return err
	}
	return s
}
