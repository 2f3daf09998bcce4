//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// goBench holds the samples of one Go benchmark, one per -count run.
type goBench struct {
	nsPerOp, cpuNsPerOp, allocsPerOp, bytesPerOp, recordsPerSec, attributes []float64
}

// runGoBenchmarks runs the receiver's Go benchmarks, and the metrics
// aggregator's, count times each.
func runGoBenchmarks(count int) (map[string]*goBench, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^(BenchmarkDecodeEnrichConvert|BenchmarkRingToConsumer|BenchmarkMetricsSink|BenchmarkAdd|BenchmarkTLSNames)$",
		"-benchmem", "-benchtime", "500000x", "-count", strconv.Itoa(count), "./receiver/", "./internal/connmetrics/")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	return parseGoBench(out), nil
}

// parseGoBench reads "BenchmarkX-2  N  123 ns/op  456 records/s  78 B/op  9 allocs/op" lines.
func parseGoBench(out []byte) map[string]*goBench {
	res := map[string]*goBench{}
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.Split(f[0], "-")[0]
		b := res[name]
		if b == nil {
			b = &goBench{}
			res[name] = b
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				b.nsPerOp = append(b.nsPerOp, v)
			case "cpu-ns/op":
				b.cpuNsPerOp = append(b.cpuNsPerOp, v)
			case "B/op":
				b.bytesPerOp = append(b.bytesPerOp, v)
			case "allocs/op":
				b.allocsPerOp = append(b.allocsPerOp, v)
			case "records/s":
				b.recordsPerSec = append(b.recordsPerSec, v)
			case "attributes":
				b.attributes = append(b.attributes, v)
			}
		}
	}
	return res
}
