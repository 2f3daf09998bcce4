//go:build linux

// Command progcheck loads each program of a BPF object on its own and says,
// per program, which atomic instructions it has and whether the running
// kernel accepts it (with the verifier's message if not). For a kernel
// where the whole object fails, it shows which programs are the cause:
//
//	(cd test && go build -o ../.tools/vm/progcheck ./vm/progcheck)  (from the repository root)
//	make vm KERNEL=5.10 CMD='.tools/vm/progcheck bpf/netflow_bpfel.o'
//
// -set NAME=VALUE sets a load-time constant (a volatile const __u32) first,
// as the loader would from its probes, e.g. -set mptcp_owner=0.
//
// -stats says, per program, what verifying it cost: the instructions the
// verifier processed, its peak and total states (the log's statistics,
// BPF_LOG_STATS) and the wall time of the load (the median of -n loads,
// after one to warm up; the maps are made once, as the loader shares
// them), e.g. to compare objects on one kernel:
//
//	make vm KERNEL=6.1 CMD='.tools/vm/progcheck -stats -n 5 bpf/netflow_bpfel.o bpf/netflownotls_bpfel.o'
//
// Atomic operations other than add (BPF_OR 0x40, BPF_FETCH 0x01, xchg,
// cmpxchg) need Linux 5.12. Needs root. Exit code 1 if any program fails.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"
)

type settings map[string]uint32

func (s settings) String() string { return fmt.Sprint(map[string]uint32(s)) }

func (s settings) Set(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	n, err := strconv.ParseUint(v, 0, 32)
	if !ok || err != nil {
		return fmt.Errorf("want NAME=NUMBER, got %q", kv)
	}
	s[k] = uint32(n)
	return nil
}

func main() {
	set := settings{}
	flag.Var(set, "set", "NAME=VALUE: set a load-time constant (repeatable)")
	stats := flag.Bool("stats", false, "print the verifier's statistics and the load time of each program")
	loads := flag.Int("n", 3, "with -stats: loads of each program to take the median time of")
	flag.Parse()
	if flag.NArg() < 1 {
		fmt.Fprintln(os.Stderr, "usage: progcheck [-set NAME=VALUE]... [-stats [-n N]] OBJECT.o...")
		os.Exit(2)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		fmt.Println("remove memlock limit:", err)
	}
	failed := false
	for _, file := range flag.Args() {
		if flag.NArg() > 1 {
			fmt.Println(file + ":")
		}
		spec, err := ebpf.LoadCollectionSpec(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := setConstants(spec, set); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			os.Exit(2)
		}
		if *stats {
			failed = measure(spec, max(*loads, 1)) || failed
		} else {
			failed = check(spec) || failed
		}
	}
	if failed {
		os.Exit(1)
	}
}

// setConstants sets the load-time constants that the object has; a name
// none of the objects has is an error.
func setConstants(spec *ebpf.CollectionSpec, set settings) error {
	for k, v := range set {
		variable := spec.Variables[k]
		if variable == nil {
			return fmt.Errorf("no variable %s", k)
		}
		if err := variable.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", k, err)
		}
	}
	for _, m := range spec.Maps {
		if m.Type == ebpf.RingBuf && m.MaxEntries == 0 {
			m.MaxEntries = 1 << 20
		}
	}
	return nil
}

// only returns a copy of spec with only program name (none for ""), and
// program arrays emptied: a tail call's target is verified on its own.
func only(spec *ebpf.CollectionSpec, name string) *ebpf.CollectionSpec {
	one := spec.Copy()
	for n := range one.Programs {
		if n != name {
			delete(one.Programs, n)
		}
	}
	for _, m := range one.Maps {
		if m.Type == ebpf.ProgramArray {
			m.Contents = nil
		}
	}
	return one
}

// check loads each program alone, with the maps it uses, and prints its
// atomic instructions and whether it loads; it says whether one failed.
func check(spec *ebpf.CollectionSpec) bool {
	failed := false
	for _, name := range mapsKeys(spec.Programs) {
		p := spec.Programs[name]
		atomics := map[string]int{}
		for _, ins := range p.Instructions {
			if ins.OpCode.Class().IsStore() && ins.OpCode.Mode() == asm.AtomicMode {
				atomics[fmt.Sprintf("%v(imm %#x)", ins.OpCode, ins.Constant)]++
			}
		}
		status := "loads"
		c, err := ebpf.NewCollection(only(spec, name))
		if err != nil {
			failed = true
			status = "FAILS: " + verifierMessage(err)
		} else {
			c.Close()
		}
		fmt.Printf("%s (%v), atomics %v: %s\n", name, p.Type, atomics, status)
	}
	return failed
}

func verifierMessage(err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Sprintf("%+v", ve)
	}
	return err.Error()
}

// The statistics line of the verifier's log (BPF_LOG_STATS), and the
// verification time that Linux 5.16 and later add before it.
var (
	processedRe = regexp.MustCompile(`processed (\d+) insns \(limit \d+\) max_states_per_insn (\d+) total_states (\d+) peak_states (\d+)`)
	verifyTime  = regexp.MustCompile(`verification time (\d+) usec`)
)

// measure loads each program n+1 times with the verifier's statistics and
// prints them with the median wall time of the last n loads; the maps are
// made once and shared. It says whether a program failed.
func measure(spec *ebpf.CollectionSpec, n int) bool {
	// The maps as a collection makes them (data sections mmapable).
	c, err := ebpf.NewCollection(only(spec, ""))
	if err != nil {
		fmt.Println("maps:", err)
		return true
	}
	defer c.Close()
	maps := c.Maps
	cache := btf.NewCache()
	failed := false
	fmt.Printf("%-22s %10s %8s %8s %8s %12s %12s\n", "program", "insns", "peak", "total", "max/insn", "load ms", "verifier ms")
	for _, name := range mapsKeys(spec.Programs) {
		one := only(spec, name)
		opts := &ebpf.CollectionOptions{
			Programs:        ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
			MapReplacements: maps,
			Cache:           cache,
		}
		var times, verifier []time.Duration
		var log string
		var err error
		for i := range n + 1 {
			start := time.Now()
			var c *ebpf.Collection
			c, err = ebpf.NewCollectionWithOptions(one, *opts)
			d := time.Since(start)
			if err != nil {
				break
			}
			log = c.Programs[name].VerifierLog
			c.Close()
			if i > 0 {
				times = append(times, d)
				if v := verifyTime.FindStringSubmatch(log); v != nil {
					us, _ := strconv.Atoi(v[1])
					verifier = append(verifier, time.Duration(us)*time.Microsecond)
				}
			}
		}
		if err != nil {
			failed = true
			fmt.Printf("%-22s FAILS: %s\n", name, verifierMessage(err))
			continue
		}
		m := processedRe.FindStringSubmatch(log)
		if m == nil {
			fmt.Printf("%-22s no statistics in the log: %q\n", name, log)
			continue
		}
		vms := "-" // not in the log before Linux 5.16
		if len(verifier) > 0 {
			vms = fmt.Sprintf("%.1f", ms(median(verifier)))
		}
		fmt.Printf("%-22s %10s %8s %8s %8s %12.1f %12s\n", name, m[1], m[4], m[3], m[2], ms(median(times)), vms)
	}
	return failed
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func mapsKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
