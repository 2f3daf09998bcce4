//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// attached is one program the collector has attached, found through its
// links: whatever this build and this kernel loaded (the owner programs
// differ between kernels), named by the program's name and its hook.
type attached struct {
	name string // the program's name (the kernel keeps 15 bytes)
	hook string // e.g. cgroup_skb/ingress, tp_btf/tcp_sendmsg_locked
	prog *ebpf.Program
	// For tracing programs: where an empty program of the same kind
	// attaches, to compare with.
	tracing    bool
	attachType ebpf.AttachType
	target     string
}

// collectorPrograms returns the programs attached by the links that
// process pid holds.
func collectorPrograms(pid int) ([]attached, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	var kernel *btf.Spec
	var out []attached
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || target != "anon_inode:bpf_link" {
			continue
		}
		id, err := fdinfoField(pid, fd.Name(), "link_id")
		if err != nil {
			return nil, err
		}
		l, err := link.NewFromID(link.ID(id))
		if err != nil {
			return nil, err
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			return nil, err
		}
		p, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			return nil, err
		}
		pinfo, err := p.Info()
		if err != nil {
			p.Close()
			return nil, err
		}
		a := attached{name: pinfo.Name, prog: p, hook: pinfo.Type.String()}
		switch {
		case info.Cgroup() != nil:
			a.hook = cgroupHook(ebpf.AttachType(info.Cgroup().AttachType))
		case info.RawTracepoint() != nil && pinfo.Type == ebpf.Tracing:
			// tp_btf, attached as a raw tracepoint.
			a.tracing, a.attachType = true, ebpf.AttachTraceRawTp
			a.target = info.RawTracepoint().Name
			a.hook = "tp_btf/" + a.target
		case info.RawTracepoint() != nil:
			a.hook = "raw_tp/" + info.RawTracepoint().Name
		case info.Tracing() != nil:
			t := info.Tracing()
			if kernel == nil {
				if kernel, err = btf.LoadKernelSpec(); err != nil {
					p.Close()
					return nil, err
				}
			}
			typ, err := kernel.TypeByID(btf.TypeID(t.TargetBtfId))
			if err != nil {
				p.Close()
				return nil, fmt.Errorf("program %s: its target: %w", a.name, err)
			}
			a.tracing, a.attachType = true, ebpf.AttachType(t.AttachType)
			switch a.attachType {
			case ebpf.AttachTraceRawTp:
				a.target = strings.TrimPrefix(typ.TypeName(), "btf_trace_")
				a.hook = "tp_btf/" + a.target
			case ebpf.AttachTraceFEntry:
				a.target, a.hook = typ.TypeName(), "fentry/"+typ.TypeName()
			case ebpf.AttachTraceFExit:
				a.target, a.hook = typ.TypeName(), "fexit/"+typ.TypeName()
			default:
				a.tracing = false
				a.hook = fmt.Sprintf("tracing %v/%s", a.attachType, typ.TypeName())
			}
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("process %d holds no BPF links", pid)
	}
	return out, nil
}

func cgroupHook(t ebpf.AttachType) string {
	switch t {
	case ebpf.AttachCGroupInetIngress:
		return "cgroup_skb/ingress"
	case ebpf.AttachCGroupInetEgress:
		return "cgroup_skb/egress"
	case ebpf.AttachCGroupInetSockCreate:
		return "cgroup/sock_create"
	default:
		return "cgroup " + t.String()
	}
}

// fdinfoField reads a numeric field of /proc/PID/fdinfo/FD.
func fdinfoField(pid int, fd, field string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(fmt.Sprintf("/proc/%d/fdinfo", pid), fd))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no " + field + " in fdinfo")
}

// emptyTracing attaches a program that does nothing to the hook of a: the
// floor of what any program there costs.
func emptyTracing(a attached) (*ebpf.Program, link.Link, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "nf_bench_empty", Type: ebpf.Tracing, AttachType: a.attachType, AttachTo: a.target, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("empty program on %s: %w", a.hook, err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: a.attachType})
	if err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("attach an empty program to %s: %w", a.hook, err)
	}
	return p, l, nil
}
