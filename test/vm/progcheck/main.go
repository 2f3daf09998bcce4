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
// Atomic operations other than add (BPF_OR 0x40, BPF_FETCH 0x01, xchg,
// cmpxchg) need Linux 5.12. Needs root. Exit code 1 if any program fails.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
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
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: progcheck [-set NAME=VALUE]... OBJECT.o")
		os.Exit(2)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		fmt.Println("remove memlock limit:", err)
	}
	spec, err := ebpf.LoadCollectionSpec(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for k, v := range set {
		variable := spec.Variables[k]
		if variable == nil {
			fmt.Fprintf(os.Stderr, "no variable %s in %s\n", k, flag.Arg(0))
			os.Exit(2)
		}
		if err := variable.Set(v); err != nil {
			fmt.Fprintf(os.Stderr, "set %s: %v\n", k, err)
			os.Exit(2)
		}
	}
	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	failed := false
	for _, name := range names {
		p := spec.Programs[name]
		atomics := map[string]int{}
		for _, ins := range p.Instructions {
			if ins.OpCode.Class().IsStore() && ins.OpCode.Mode() == asm.AtomicMode {
				atomics[fmt.Sprintf("%v(imm %#x)", ins.OpCode, ins.Constant)]++
			}
		}
		// The program alone, with the maps it uses.
		one := spec.Copy()
		for n := range one.Programs {
			if n != name {
				delete(one.Programs, n)
			}
		}
		for _, m := range one.Maps {
			if m.Type == ebpf.RingBuf && m.MaxEntries == 0 {
				m.MaxEntries = 1 << 20
			}
		}
		status := "loads"
		c, err := ebpf.NewCollection(one)
		if err != nil {
			failed = true
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				status = fmt.Sprintf("FAILS: %+v", ve)
			} else {
				status = "FAILS: " + err.Error()
			}
		} else {
			c.Close()
		}
		fmt.Printf("%s (%v), atomics %v: %s\n", name, p.Type, atomics, status)
	}
	if failed {
		os.Exit(1)
	}
}
