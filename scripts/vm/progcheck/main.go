// Command progcheck loads each program of a BPF object on its own and says,
// per program, which atomic instructions it has and whether the running
// kernel accepts it (with the verifier's message if not). For a kernel
// where the whole object fails, it shows which programs are the cause:
//
//	go build -o .tools/vm/progcheck ./scripts/vm/progcheck
//	make vm KERNEL=5.10 CMD='.tools/vm/progcheck bpf/netflow_bpfel.o'
//
// Atomic operations other than add (BPF_OR 0x40, BPF_FETCH 0x01, xchg,
// cmpxchg) need Linux 5.12. Needs root. Exit code 1 if any program fails.
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: progcheck OBJECT.o")
		os.Exit(2)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		fmt.Println("remove memlock limit:", err)
	}
	spec, err := ebpf.LoadCollectionSpec(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
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
