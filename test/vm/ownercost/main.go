//go:build linux

// Command ownercost measures what naming the owner of accepted sockets costs
// the kernel (docs/record.md, "Who owned it"), on the kernel it runs on: with
// kernel.bpf_stats_enabled, run_time_ns / run_cnt of the receiver's programs
// next to empty programs on the same hooks.
//
//   - fallback (send/recv tracepoints, where the kernel has no fexit): per
//     TCP send and read, during a bulk transfer over loopback in both
//     directions, with the sockets in the watched cgroup (the accepted one
//     owned after its first read: the "already owned" path; the connecting
//     one: "not accepted") and outside it ("unwatched": no socket storage);
//   - fexit on inet_csk_accept: per accept, during connection churn in the
//     watched cgroup.
//
// Usage (needs root; prints one line per program and workload):
//
//	(cd test && go build -o ../.tools/vm/ownercost ./vm/ownercost)  (from the repository root)
//	.tools/vm/ownercost -fallback   # here: no fexit
//	make vm KERNEL=6.12 CMD='.tools/vm/ownercost; .tools/vm/ownercost -fallback'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/churn"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

var (
	duration = flag.Duration("duration", 2*time.Second, "length of each workload")
	rounds   = flag.Int("rounds", 3, "rounds of each workload")
	fallback = flag.Bool("fallback", false, "leave out the fexit program, as on a kernel without trampolines")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ownercost:", err)
		os.Exit(1)
	}
}

// probe is a program whose cost is measured.
type probe struct {
	name string
	prog *ebpf.Program
}

func run() error {
	root, err := cgroupv2.Root()
	if err != nil {
		return err
	}
	home, err := testnet.OwnCgroup(root)
	if err != nil {
		return err
	}
	watched := filepath.Join(root, fmt.Sprintf("netflowtcpend-ownercost-%d", os.Getpid()))
	if err := os.Mkdir(watched, 0o755); err != nil {
		return err
	}
	defer os.Remove(watched)

	opts := bpf.Options{RingBufferSize: 1 << 20}
	if *fallback {
		opts.Without = []string{bpf.AcceptProgram}
	}
	objs, err := bpf.Load(opts)
	if err != nil {
		return err
	}
	defer objs.Close()
	if err := objs.Attach(watched); err != nil {
		return err
	}
	rd, err := objs.NewReader()
	if err != nil {
		return err
	}
	defer rd.Close()
	go drain(rd)
	fmt.Printf("kernel %s, owner of accepted sockets: %s\n", release(), objs.Features.OwnerOfAccepted)

	var probes []probe
	for _, n := range []string{bpf.SendProgram, bpf.RecvProgram, bpf.AcceptProgram} {
		if p, err := findProgram(n); err == nil {
			defer p.Close()
			probes = append(probes, probe{n, p})
		}
	}
	for _, e := range []struct {
		name, target string
		typ          ebpf.AttachType
	}{
		{"empty tp_btf tcp_sendmsg_locked", "tcp_sendmsg_locked", ebpf.AttachTraceRawTp},
		{"empty tp_btf tcp_rcv_space_adjust", "tcp_rcv_space_adjust", ebpf.AttachTraceRawTp},
		{"empty fexit inet_csk_accept", "inet_csk_accept", ebpf.AttachTraceFExit},
	} {
		p, l, err := empty(e.target, e.typ)
		if err != nil {
			fmt.Printf("%s: not here: %v\n", e.name, err)
			continue
		}
		defer p.Close()
		defer l.Close()
		probes = append(probes, probe{e.name, p})
	}

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()

	workloads := []struct {
		name   string
		cgroup string
		run    func() error
	}{
		{"bulk, watched (accepted socket owned, connecting socket not accepted)", watched, bulkBothWays},
		{"bulk, unwatched (no socket storage)", home, bulkBothWays},
		{"churn, watched (one accept per connection)", watched, connChurn},
	}
	for _, w := range workloads {
		if err := testnet.MoveSelf(w.cgroup); err != nil {
			return err
		}
		sums := make([][2]float64, len(probes)) // ns, runs
		for range *rounds {
			before := make([]*ebpf.ProgramStats, len(probes))
			for i, p := range probes {
				if before[i], err = p.prog.Stats(); err != nil {
					return err
				}
			}
			if err := w.run(); err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
			for i, p := range probes {
				after, err := p.prog.Stats()
				if err != nil {
					return err
				}
				sums[i][0] += float64(after.Runtime - before[i].Runtime)
				sums[i][1] += float64(after.RunCount - before[i].RunCount)
			}
		}
		fmt.Printf("\n%s, %d rounds of %v:\n", w.name, *rounds, *duration)
		for i, p := range probes {
			if sums[i][1] == 0 {
				fmt.Printf("  %-36s  no runs\n", p.name)
				continue
			}
			fmt.Printf("  %-36s  %10.0f runs  %6.1f ns/run\n", p.name, sums[i][1], sums[i][0]/sums[i][1])
		}
	}
	return testnet.MoveSelf(home)
}

// empty loads a program that does nothing on a tracing hook and attaches it.
func empty(target string, typ ebpf.AttachType) (*ebpf.Program, link.Link, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "nf_empty", Type: ebpf.Tracing, AttachType: typ, AttachTo: target, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return nil, nil, err
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: p})
	if err != nil {
		p.Close()
		return nil, nil, err
	}
	return p, l, nil
}

// bulkBothWays sends for the duration from the connecting socket to the
// accepted one, then back.
func bulkBothWays() error {
	for _, fromClient := range []bool{true, false} {
		if err := bulk(*duration/2, fromClient); err != nil {
			return err
		}
	}
	return nil
}

func bulk(d time.Duration, fromClient bool) error {
	ln, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := testnet.Dial(testnet.AddrPort(ln.Addr()))
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := ln.AcceptTCP()
	if err != nil {
		return err
	}
	defer s.Close()
	src, dst := net.Conn(c), net.Conn(s)
	if !fromClient {
		src, dst = s, c
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, dst)
		done <- err
	}()
	buf := make([]byte, 256<<10)
	for start := time.Now(); time.Since(start) < d; {
		if _, err := src.Write(buf); err != nil {
			return err
		}
	}
	if cw, ok := src.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	return <-done
}

// connChurn makes short connections for the duration, one at a time
// (churn.Run: connect, 64 bytes each way, close).
func connChurn() error {
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	r, err := churn.Run(ctx, churn.Options{Clients: 1})
	if err != nil {
		return err
	}
	if r.Errors > 0 {
		return fmt.Errorf("churn: %d connections failed, the first: %s", r.Errors, r.FirstError)
	}
	return nil
}

// drain reads the ring buffer so that it never fills.
func drain(rd *ringbuf.Reader) {
	for {
		if _, err := rd.Read(); errors.Is(err, ringbuf.ErrClosed) {
			return
		}
	}
}

func findProgram(name string) (*ebpf.Program, error) {
	var found *ebpf.Program
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			break
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		if info, err := p.Info(); err != nil || info.Name != name {
			p.Close()
			continue
		}
		if found != nil {
			found.Close()
		}
		found = p
	}
	if found == nil {
		return nil, fmt.Errorf("no loaded program named %s", name)
	}
	return found, nil
}

func release() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}
