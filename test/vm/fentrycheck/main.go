//go:build linux

// Command fentrycheck says whether the running kernel loads and attaches
// fentry, fexit and kprobe programs, and whether they run: each program
// counts calls of inet_csk_accept, and the command then accepts a loopback
// TCP connection. Needs root. This machine forbids fentry/fexit and has no
// kprobes, so it is meant for a guest:
//
//	(cd test && go build -o ../.tools/vm/fentrycheck ./vm/fentrycheck)  (from the repository root)
//	make vm KERNEL=6.12 CMD=.tools/vm/fentrycheck
//
// Exit code 1 if any kind did not load, attach or run.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

const target = "inet_csk_accept"

func main() {
	if err := rlimit.RemoveMemlock(); err != nil {
		fmt.Println("remove memlock limit:", err)
	}
	ok := true
	for _, kind := range []string{"fentry", "fexit", "kprobe"} {
		n, err := check(kind)
		if err != nil {
			ok = false
			fmt.Printf("%-6s %s: FAIL: %v\n", kind, target, err)
			continue
		}
		fmt.Printf("%-6s %s: ok, loaded, attached, ran %d times\n", kind, target, n)
	}
	if !ok {
		os.Exit(1)
	}
}

// check loads a program of the kind that adds 1 to counter[0] on each
// call of target, attaches it, accepts one connection, and returns the count.
func check(kind string) (uint64, error) {
	counter, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return 0, fmt.Errorf("create map: %w", err)
	}
	defer counter.Close()

	spec := &ebpf.ProgramSpec{
		Name:    "check_" + kind,
		License: "GPL",
		Instructions: asm.Instructions{
			// key = 0 on the stack; value = lookup(counter, &key)
			asm.StoreImm(asm.R10, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, counter.FD()),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			// atomic *value += 1 (BPF_XADD: every kernel since 4.x)
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
	}
	switch kind {
	case "fentry":
		spec.Type, spec.AttachType, spec.AttachTo = ebpf.Tracing, ebpf.AttachTraceFEntry, target
	case "fexit":
		spec.Type, spec.AttachType, spec.AttachTo = ebpf.Tracing, ebpf.AttachTraceFExit, target
	case "kprobe":
		spec.Type = ebpf.Kprobe
	}
	prog, err := ebpf.NewProgramWithOptions(spec, ebpf.ProgramOptions{LogLevel: ebpf.LogLevelBranch})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return 0, fmt.Errorf("load: %w (verifier: %+v)", err, ve) //nolint:errorlint // %+v prints the whole verifier log
		}
		return 0, fmt.Errorf("load: %w", err)
	}
	defer prog.Close()

	var l link.Link
	if kind == "kprobe" {
		l, err = link.Kprobe(target, prog, nil)
	} else {
		l, err = link.AttachTracing(link.TracingOptions{Program: prog})
	}
	if err != nil {
		return 0, fmt.Errorf("attach: %w", err)
	}
	defer l.Close()

	if err := acceptOne(); err != nil {
		return 0, err
	}
	var n uint64
	if err := counter.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read counter: %w", err)
	}
	if n == 0 {
		return 0, errors.New("attached but never ran")
	}
	return n, nil
}

func acceptOne() error {
	// Plain TCP: Go listens with MPTCP by default.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		return err
	}
	return s.Close()
}
