//go:build linux

package e2e

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/churn"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

// The shipped examples/production.yaml (memory_limiter, the exporter's
// queue counted in records, retries with a deadline) exports over
// OTLP/HTTP to an endpoint that, under connection churn, stalls (accepts,
// never answers), answers 503 (retryable) or answers 400 (permanent) for a
// while, then recovers. Throughout, the collector's RSS stays under
// productionRSSBound; afterwards every socket the churn made has exactly one
// record at the endpoint or is counted where it was given up; and records
// of connections made after the recovery arrive without a restart.
// "Exactly one record" is the receiver's: a request that the exporter
// sends again because its timeout ran out while the endpoint was still
// taking it (a slow machine draining the queue) is counted apart as
// resent (loadtest.Sink), not as records twice.
//
// NETFLOWTCPEND_BACKPRESSURE_FOR sets how long the endpoint misbehaves
// (make test: 10s; make backpressure: 60s), NETFLOWTCPEND_CHURN_RATE the
// connections per second of 4 clients (make test: 2000, gentle on the other
// tests running meanwhile; make backpressure: 0, as fast as they go, which
// overflows the queue and the ring buffer).

// productionRSSBound is the RSS docs/reliability.md states for examples/production.yaml.
const productionRSSBound = 256 << 20

func TestProductionConfigUnderBackpressure(t *testing.T) {
	bin := collectorBinary(t)
	testenv.RequireRoot(t)
	failFor := envDuration(t, "NETFLOWTCPEND_BACKPRESSURE_FOR", 10*time.Second)
	rate := 2000.0
	if v := os.Getenv("NETFLOWTCPEND_CHURN_RATE"); v != "" {
		_, err := fmt.Sscan(v, &rate)
		require.NoError(t, err, "NETFLOWTCPEND_CHURN_RATE")
	}
	for _, sc := range []scenario{
		{name: "stall", mode: loadtest.Stall},
		{name: "unavailable", mode: loadtest.Unavailable},
		{name: "bad_request", mode: loadtest.BadRequest},
		// The memory_limiter refuses before the exporter's queue is full:
		// its soft limit (limit_mib - spike_limit_mib, 30 MiB) is below
		// the heap a full queue takes.
		{name: "memory_limiter", mode: loadtest.Stall, configs: []string{
			"yaml:processors::memory_limiter::limit_mib: 60",
			"yaml:processors::memory_limiter::spike_limit_mib: 30",
		}, limiterRefuses: true},
	} {
		t.Run(sc.name, func(t *testing.T) { backpressure(t, bin, sc, failFor, rate) })
	}
}

type scenario struct {
	name           string
	mode           loadtest.Mode
	configs        []string // overrides of examples/production.yaml
	limiterRefuses bool
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, name)
	return d
}

// sample is one second of the run.
type sample struct {
	at        time.Duration
	phase     string
	rss, heap float64 // bytes
	lost      float64
	queue     float64 // records in the exporter's queue
}

func backpressure(t *testing.T, bin string, sc scenario, failFor time.Duration, rate float64) {
	t.Helper()
	mode := sc.mode
	sink, err := loadtest.NewSink()
	require.NoError(t, err)
	t.Cleanup(func() { sink.Close() })
	cg := testnet.NewCgroup(t)
	col, err := loadtest.StartCollector(loadtest.CollectorOptions{
		Binary: bin,
		Configs: append([]string{
			examplePath(t, "production.yaml"),
			"yaml:receivers::netflow_tcp_end::cgroup_path: " + cg.Path,
		}, sc.configs...),
		Env: append([]string{"OTLP_ENDPOINT=http://" + sink.Addr()}, loadtest.ProductionEnv...),
	})
	require.NoError(t, err)
	t.Cleanup(col.Kill)

	// The churn runs in a worker process inside the watched cgroup: every
	// socket there is one it made and reported.
	worker, err := loadtest.StartWorker(cg.Path, nil, churn.Options{Clients: 4, Rate: rate})
	require.NoError(t, err)
	t.Cleanup(worker.Kill)

	var mu sync.Mutex
	phase := "before"
	setPhase := func(p string) { mu.Lock(); phase = p; mu.Unlock() }
	var samples []sample
	start := time.Now()
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			s := sample{at: time.Since(start).Round(time.Second)}
			if rss, err := col.RSS(); err == nil {
				s.rss = float64(rss)
			}
			if m, err := col.Metrics(); err == nil {
				s.heap = m.Get("otelcol_process_runtime_heap_alloc_bytes")
				s.lost = m.Get("otelcol_netflowtcpend_records_lost")
				s.queue = m.Get("otelcol_exporter_queue_size")
			}
			mu.Lock()
			s.phase = phase
			samples = append(samples, s)
			mu.Unlock()
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	// Records flow.
	if !assert.Eventually(t, func() bool { return sink.Records() > 0 }, 30*time.Second, 100*time.Millisecond) {
		// The log as it is now, not as it was when the wait began.
		require.FailNow(t, "no record reached the endpoint", "collector log:\n%s", col.Log())
	}
	time.Sleep(time.Second)

	setPhase(mode.String())
	sink.SetMode(mode)
	socketsBefore := worker.SocketCount()
	time.Sleep(failFor)
	sink.SetMode(loadtest.Accept)
	setPhase("recovered")
	recovered := time.Now()
	madeWhileFailing := worker.SocketCount() - socketsBefore
	mark := worker.Sockets()

	// Records of connections made after the recovery arrive, without a
	// restart.
	var recoveredIn time.Duration
	deadline := time.Now().Add(3*time.Minute + failFor)
	for time.Now().Before(deadline) {
		if fresh := worker.SocketsNotIn(mark); len(fresh) > 0 && sink.Delivered(fresh) > 0 {
			recoveredIn = time.Since(recovered)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NotZero(t, recoveredIn, "no record of a connection made after the recovery arrived; collector log:\n%s", col.Log())
	time.Sleep(time.Second)
	res, err := worker.Stop()
	require.NoError(t, err)
	made := worker.Sockets()
	// A connect that failed on the busy machine (counted in res.Errors)
	// made a socket too, whose end is a record like any other.
	require.GreaterOrEqual(t, len(made), int(2*res.Conns), "every connection's two sockets were reported")

	// Every socket has its record at the endpoint, or is counted where it
	// was given up: lost in the kernel (and not written later), dropped by
	// the receiver, or failed by the exporter. Wait for the pipeline to
	// settle: the accounting closes, or nothing moves for 20 s.
	type ledger struct {
		acc                            loadtest.Accounting
		lost, retried, dropped, failed float64
		refused, enqueueFailed         float64
		limiterRefused                 float64
	}
	read := func() ledger {
		m, err := col.Metrics()
		require.NoError(t, err)
		return ledger{
			acc:            sink.Account(made),
			lost:           m.Get("otelcol_netflowtcpend_records_lost"),
			retried:        m.Get("otelcol_netflowtcpend_records_retried"),
			dropped:        m.Get("otelcol_netflowtcpend_records_dropped"),
			failed:         m.Get("otelcol_exporter_send_failed_log_records"),
			refused:        m.Get("otelcol_receiver_refused_log_records"),
			enqueueFailed:  m.Get("otelcol_exporter_enqueue_failed_log_records"),
			limiterRefused: m.Get("otelcol_processor_memory_limiter_refused_log_records"),
		}
	}
	counted := func(l ledger) int { return int(l.lost - l.retried + l.dropped + l.failed) }
	var l ledger
	for last, still := (ledger{}), time.Now(); ; time.Sleep(500 * time.Millisecond) {
		l = read()
		if l.acc.Missing == counted(l) {
			break
		}
		if l != last {
			last, still = l, time.Now()
		} else if time.Since(still) > 20*time.Second {
			break
		}
	}
	close(stopSampling)
	<-sampled
	require.NoError(t, col.Stop(), "the collector stops cleanly")

	var peak sample
	var series strings.Builder
	for _, s := range samples {
		if s.rss > peak.rss {
			peak = s
		}
		fmt.Fprintf(&series, "  %4.0fs %-18s rss %5.1f MiB  heap %5.1f MiB  queue %6.0f  lost %7.0f\n",
			s.at.Seconds(), s.phase, s.rss/(1<<20), s.heap/(1<<20), s.queue, s.lost)
	}
	t.Logf("%s: endpoint failing for %v, at %.0f connections/s: %d connections (%d failed: %q; %d sockets, %d made while failing); "+
		"peak RSS %.1f MiB (%s, heap %.1f MiB); delivered %d, missing %d = kernel lost %.0f - retried %.0f + receiver dropped %.0f "+
		"+ exporter failed %.0f; duplicates %d, unexpected %d, resent by the exporter %d; refused (per call) by the receiver's next %.0f, of those by the memory_limiter %.0f, "+
		"exporter enqueue failed (per call) %.0f; "+
		"first record of a new connection %v after the recovery\n%s",
		sc.name, failFor, res.Rate(), res.Conns, res.Errors, res.FirstError, len(made), madeWhileFailing,
		peak.rss/(1<<20), peak.phase, peak.heap/(1<<20), l.acc.Delivered, l.acc.Missing, l.lost, l.retried, l.dropped,
		l.failed, l.acc.Duplicates, l.acc.Unexpected, l.acc.Resent, l.refused, l.limiterRefused, l.enqueueFailed, recoveredIn.Round(10*time.Millisecond), series.String())

	assert.Less(t, peak.rss, float64(productionRSSBound), "RSS stays under the stated bound")
	assert.Zero(t, l.acc.Duplicates, "no record twice")
	assert.Zero(t, l.acc.Unexpected, "no record of a socket the churn did not make")
	assert.Equal(t, l.acc.Missing, counted(l),
		"every socket without a record is counted: lost %.0f - retried %.0f + dropped %.0f + exporter failed %.0f",
		l.lost, l.retried, l.dropped, l.failed)
	assert.Positive(t, madeWhileFailing, "connections went on while the endpoint failed")
	if sc.limiterRefuses {
		assert.Positive(t, l.limiterRefused, "the memory_limiter refused records")
	}

	// Rate-limited logs: the receiver's lines about the consumer and the
	// kernel's losses, at most one each per 10 s (and the first at once).
	log := col.Log()
	var ours strings.Builder
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Next consumer") || strings.Contains(line, "Kernel ring buffer was full") {
			ours.WriteString("  " + line + "\n")
		}
	}
	t.Logf("the receiver's lines about backpressure:\n%s", ours.String())
	limit := 3 + int(time.Since(start)/(10*time.Second))
	for _, line := range []string{
		"Next consumer refused records;", "Next consumer accepts records again", "Next consumer refused records permanently",
		"Next consumer has not returned", "Kernel ring buffer was full",
	} {
		assert.LessOrEqual(t, strings.Count(log, line), limit, "lines %q", line)
	}
	t.Logf("the exporter logged %d lines \"Exporting failed. Dropping data.\"", strings.Count(log, "Exporting failed. Dropping data."))
}
