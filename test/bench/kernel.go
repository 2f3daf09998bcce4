//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/bpftest"
	tp "github.com/netflowtcpend/netflowtcpend/internal/testutils/testpacket"
)

// emptyPrograms are cgroup_skb programs that only let the packet through,
// attached next to the collector's: the floor of what a program costs.
type emptyPrograms struct {
	ingress, egress *ebpf.Program
	links           []link.Link
}

func newEmptyProgram() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "nf_bench_empty", Type: ebpf.CGroupSKB, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	})
}

// emptySockCreate attaches an empty cgroup/sock_create program to cgroup.
func emptySockCreate(cgroup string) (*ebpf.Program, link.Link, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "nf_bench_empty", Type: ebpf.CGroupSock, AttachType: ebpf.AttachCGroupInetSockCreate, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	})
	if err != nil {
		return nil, nil, err
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: ebpf.AttachCGroupInetSockCreate, Program: p})
	if err != nil {
		p.Close()
		return nil, nil, err
	}
	return p, l, nil
}

func attachEmpty(cgroup string) (*emptyPrograms, error) {
	e := &emptyPrograms{}
	var err error
	if e.ingress, err = newEmptyProgram(); err != nil {
		return nil, err
	}
	if e.egress, err = newEmptyProgram(); err != nil {
		return nil, err
	}
	for _, a := range []struct {
		p *ebpf.Program
		t ebpf.AttachType
	}{{e.ingress, ebpf.AttachCGroupInetIngress}, {e.egress, ebpf.AttachCGroupInetEgress}} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: a.t, Program: a.p})
		if err != nil {
			e.close()
			return nil, err
		}
		e.links = append(e.links, l)
	}
	return e, nil
}

func (e *emptyPrograms) close() {
	for _, l := range e.links {
		l.Close()
	}
	e.ingress.Close()
	e.egress.Close()
}

// progStats is a snapshot of one program's run time and run count.
type progStats struct {
	runtime time.Duration
	runs    uint64
}

func snapshot(p *ebpf.Program) (progStats, error) {
	s, err := p.Stats()
	if err != nil {
		return progStats{}, err
	}
	return progStats{s.Runtime, s.RunCount}, nil
}

// nsPerRun is the mean run time between two snapshots.
func nsPerRun(before, after progStats) float64 {
	if after.runs == before.runs {
		return 0
	}
	return float64(after.runtime-before.runtime) / float64(after.runs-before.runs)
}

// mapMemory sums the memory the kernel charges for the maps a program uses.
func mapMemory(p *ebpf.Program) (uint64, error) {
	info, err := p.Info()
	if err != nil {
		return 0, err
	}
	ids, ok := info.MapIDs()
	if !ok {
		return 0, errors.New("no map ids")
	}
	var total uint64
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return 0, err
		}
		mi, err := m.Info()
		m.Close()
		if err != nil {
			return 0, err
		}
		if mem, ok := mi.Memlock(); ok {
			total += mem
		}
	}
	return total, nil
}

// testRunFigure is the BPF_PROG_TEST_RUN cost of one kind of segment, above
// the empty program on the same frame.
type testRunFigure struct {
	name           string
	ns, emptyNs    float64
	programIngress bool
}

// testRunFigures runs the programs on crafted segments, each repeated in
// the kernel, next to the empty program.
func testRunFigures() ([]testRunFigure, error) {
	objs, err := bpf.Load(bpf.Options{DNSPayloadLimit: 4096, TLSHelloLimit: bpf.MaxTLSHello})
	if err != nil {
		return nil, err
	}
	defer objs.Close()
	empty, err := newEmptyProgram()
	if err != nil {
		return nil, err
	}
	defer empty.Close()

	a, b := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:443")
	resolver := netip.MustParseAddrPort("10.0.0.53:53")
	answer := make([]byte, 120)
	kinds := []struct {
		name    string
		ingress bool
		frame   []byte
		repeat  int
	}{
		{"data segment (ingress)", true, tp.Ethernet(tp.Segment{Src: b, Dst: a, Seq: 1, Ack: 1, Flags: tp.ACK | tp.PSH, Payload: make([]byte, 1000)}.IPv4()), 1_000_000},
		{"data segment (egress)", false, tp.Ethernet(tp.Segment{Src: a, Dst: b, Seq: 1, Ack: 1, Flags: tp.ACK | tp.PSH, Payload: make([]byte, 1000)}.IPv4()), 1_000_000},
		{"SYN (egress, connecting)", false, tp.Ethernet(tp.Segment{Src: a, Dst: b, Seq: 1, Flags: tp.SYN}.IPv4()), 1_000_000},
		{"SYN-ACK (ingress)", true, tp.Ethernet(tp.Segment{Src: b, Dst: a, Seq: 1, Ack: 2, Flags: tp.SYN | tp.ACK}.IPv4()), 1_000_000},
		{"SYN-ACK (egress)", false, tp.Ethernet(tp.Segment{Src: b, Dst: a, Seq: 1, Ack: 2, Flags: tp.SYN | tp.ACK}.IPv4()), 1_000_000},
		{"FIN, then its retransmissions (egress)", false, tp.Ethernet(tp.Segment{Src: a, Dst: b, Seq: 1, Ack: 1, Flags: tp.ACK | tp.FIN}.IPv4()), 1_000_000},
		{"RST, then repeats (ingress)", true, tp.Ethernet(tp.Segment{Src: b, Dst: a, Seq: 1, Ack: 1, Flags: tp.RST}.IPv4()), 1_000_000},
		{"DNS answer, 120 bytes (ingress)", true, tp.Ethernet(tp.Datagram{Src: resolver, Dst: a, Payload: answer}.IPv4()), 20_000},
	}
	var out []testRunFigure
	ingress, egress, err := bpftest.Programs()
	if err != nil {
		return nil, err
	}
	defer ingress.Close()
	defer egress.Close()
	for _, k := range kinds {
		prog := egress
		if k.ingress {
			prog = ingress
		}
		_, d, err := prog.Benchmark(k.frame, k.repeat, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.name, err)
		}
		_, de, err := empty.Benchmark(k.frame, k.repeat, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, testRunFigure{name: k.name, ns: float64(d.Nanoseconds()), emptyNs: float64(de.Nanoseconds()), programIngress: k.ingress})
	}
	return out, nil
}
