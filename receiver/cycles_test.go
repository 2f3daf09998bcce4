//go:build linux

package receiver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/goleak"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/bpfids"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/otlpsink"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// startShutdownCycles is how many times TestStartShutdownCycles starts and
// stops a receiver: what a collector that reloads its configuration often
// does over a long life. In an emulated kernel-matrix guest each start
// verifies the programs at TCG speed (5 to 10 s a cycle on 5.10, where 100
// cycles took 17 of CI's 40 minutes, and 10 cycles 50 s of 6.1's 841 s):
// 4 cycles there still catch what one cycle leaks, and the host's make
// test does the 100.
func startShutdownCycles() int {
	if testenv.Emulated() {
		return 4
	}
	return 100
}

// A receiver started and shut down many times in one process leaves
// nothing behind: no goroutine, no file descriptor, no BPF program, map or
// link in the kernel, nothing attached to the cgroup; and each cycle's
// consumer gets exactly the records of the connections of that cycle.
func TestStartShutdownCycles(t *testing.T) {
	testenv.RequireRoot(t)
	cg := testnet.NewCgroup(t)

	// The first cycle initializes what a process initializes once (the
	// network poller, cilium/ebpf's feature probes and kernel BTF): the
	// baseline is taken after it.
	runCycle(t, cg, -1)
	goroutines := goleak.IgnoreCurrent()
	fds := openFDs(t)

	var held bpfids.IDs
	var starts, stops []time.Duration
	begin := time.Now()
	cycles := startShutdownCycles()
	for i := range cycles {
		c := runCycle(t, cg, i)
		held = held.Add(c.held)
		starts, stops = append(starts, c.start), append(stops, c.stop)
		if t.Failed() {
			t.Fatalf("cycle %d failed", i)
		}
	}
	elapsed := time.Since(begin)
	t.Logf("%d cycles in %v: Start median %v (max %v), Shutdown median %v (max %v); %d programs, %d maps, %d links held in all",
		cycles, elapsed.Round(time.Millisecond), median(starts), slices.Max(starts), median(stops), slices.Max(stops),
		len(held.Progs), len(held.Maps), len(held.Links))

	goleak.VerifyNone(t, goroutines)
	assert.Equal(t, fds, openFDs(t), "open file descriptors before and after the cycles")

	still, err := bpfids.Held(os.Getpid())
	require.NoError(t, err)
	assert.Zero(t, still.Len(), "BPF objects the process still holds: %v", still)

	attached, err := bpfids.Attached(cg.Path)
	require.NoError(t, err)
	assert.Empty(t, attached, "programs still attached to the test cgroup")

	// Every program, map and link that a cycle held is gone from the
	// kernel. Links and programs go when their last descriptor closes;
	// the kernel frees a program's maps after an RCU grace period, so the
	// last cycle's maps may take a moment.
	var alive bpfids.IDs
	if !assert.Eventually(t, func() bool {
		alive, err = held.Alive()
		require.NoError(t, err)
		return alive.Len() == 0
	}, 10*time.Second, 10*time.Millisecond, "still in the kernel: %v", &alive) {
		t.Logf("the maps still in the kernel: %s", bpfids.DescribeMaps(alive.Maps))
	}
}

// cycle is what one Start/Shutdown cycle measured.
type cycle struct {
	held        bpfids.IDs // the BPF objects the process held while started
	start, stop time.Duration
}

// runCycle starts a receiver on cg, makes one loopback connection in cg,
// shuts the receiver down and checks that its consumer got exactly that
// connection's two records.
func runCycle(t *testing.T, cg *testnet.Cgroup, i int) cycle {
	t.Helper()
	cfg := DefaultConfig()
	cfg.CgroupPath = cg.Path
	cfg.Filters.ExcludeSelf = false // the test's sockets are what it watches
	sink := new(consumertest.LogsSink)
	r := newTestReceiver(t, *cfg, sink)

	var c cycle
	begin := time.Now()
	require.NoError(t, r.Start(context.Background(), nil), "cycle %d", i)
	c.start = time.Since(begin)
	held, err := bpfids.Held(os.Getpid())
	require.NoError(t, err)
	c.held = held
	require.NotEmpty(t, held.Links, "cycle %d: no link held while started", i)

	client, server := cg.Pair(t)
	clientCookie, err := testnet.Cookie(client)
	require.NoError(t, err)
	serverCookie, err := testnet.Cookie(server)
	require.NoError(t, err)
	require.NoError(t, client.Close())
	require.NoError(t, readEnd(t, server))
	require.NoError(t, server.Close())

	begin = time.Now()
	require.NoError(t, r.Shutdown(context.Background()), "cycle %d", i)
	c.stop = time.Since(begin)
	// Nothing of a BPF map stays mapped into the process: the kernel
	// would keep such a map until Go's garbage collector unmapped it.
	mapped, err := bpfids.Mapped(os.Getpid())
	require.NoError(t, err)
	assert.Empty(t, mapped, "cycle %d: BPF maps still mapped into the process after Shutdown", i)

	var cookies []uint64
	for _, ld := range sink.AllLogs() {
		otlpsink.ForEach(ld, func(_ pcommon.Resource, lr plog.LogRecord) {
			v, _ := lr.Attributes().Get(attrSocketCookie.String())
			cookies = append(cookies, uint64(v.Int()))
		})
	}
	assert.ElementsMatch(t, []uint64{clientCookie, serverCookie}, cookies,
		"cycle %d: the records of this cycle's connection, each once, and nothing else", i)
	return c
}

// openFDs returns this process's open file descriptors and what they are.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	fds := map[string]string{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil {
			fds[e.Name()] = target
		}
	}
	return fds
}

func median(d []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(d))
	return s[len(s)/2]
}
