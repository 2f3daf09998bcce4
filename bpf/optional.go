//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Optional programs: tracing programs that some kernels cannot load.
const (
	// StateProgram reports the ends without FIN or RST.
	StateProgram = "netflow_state"
	// AcceptProgram, SendProgram and RecvProgram name the owner of
	// accepted sockets: the first at the accept (fexit), the others,
	// where the kernel has no fexit, at the first send or read.
	AcceptProgram = "netflow_accept"
	SendProgram   = "netflow_send"
	RecvProgram   = "netflow_recv"
	// CgroupProgram reports new cgroups (RecordCgroup).
	CgroupProgram = "netflow_cgroup_mkdir"
)

// The kernel features the optional programs need, and what records lack
// without them.
const (
	stateFeature = "tp_btf programs with socket storage (Linux 5.11)"
	stateAbsent  = "records of connections that end without FIN or RST (timeouts, ICMP errors, connects given up)"
	ownerFeature = "fexit (BPF trampolines) on inet_csk_accept, or the tcp_sendmsg_locked (after Linux 6.12) and " +
		"tcp_rcv_space_adjust tracepoints, with socket storage (Linux 5.11)"
	ownerAbsent    = "the owner process of incoming connections"
	cgroupFeature  = "the cgroup_mkdir tracepoint (tp_btf)"
	cgroupAbsent   = "the container.id and cgroup path of containers created and removed between two walks of the cgroup tree"
	readOnlyAbsent = "the owner process of incoming connections that the process never reads from"
	sendOnlyAbsent = "the owner process of incoming connections that the process never sends on"
)

// Unavailable is something this kernel cannot give.
type Unavailable struct {
	// Feature is the kernel feature that is missing.
	Feature string
	// Program is the optional program that did not load, if it is one
	// (several: comma-separated).
	Program string
	// Absent is what records lack without it.
	Absent string
	// Err is why the program did not load, if it is one.
	Err error
}

// errWithout is why a program in Options.Without did not load.
var errWithout = errors.New("left out (Options.Without)")

// loadOptional loads the optional programs that this kernel can load and
// opts does not leave out, sharing the maps of o, and notes in o what each
// one that did not load takes from records.
func (o *Objects) loadOptional(spec *ebpf.CollectionSpec, opts Options, shared *ebpf.CollectionOptions) error {
	optional := func(name string) error {
		if slices.Contains(opts.Without, name) {
			return errWithout
		}
		p, err := loadProgram(spec, name, shared)
		if err != nil {
			return err
		}
		o.optional[name] = p
		return nil
	}

	// The owner of accepted sockets: once per socket at the accept where
	// the kernel allows fexit, else at every send and read (the
	// fallback). Tried first: netflow_state clears the fallback's table of
	// settled sockets, and only where there is one (settled_cache, a
	// constant of each program's own load).
	acceptErr := optional(AcceptProgram)
	if acceptErr == nil {
		if acceptErr = probeAttach(o.optional[AcceptProgram]); acceptErr != nil {
			o.optional[AcceptProgram].Close()
			delete(o.optional, AcceptProgram)
		}
	}
	fallback := acceptErr != nil
	if err := spec.Variables["settled_cache"].Set(boolU32(fallback)); err != nil {
		return fmt.Errorf("set settled_cache: %w", err)
	}

	if err := optional(StateProgram); err != nil {
		o.Unavailable = append(o.Unavailable, Unavailable{Feature: stateFeature, Program: StateProgram, Absent: stateAbsent, Err: err})
	} else {
		o.Features.EndsWithoutFINOrRST = true
		// It starts accepted sockets too (start.h): the listeners'
		// state need not take the time of every SYN. And it tells when a
		// socket closes, which frees connecting sockets' entries in
		// conn_slots (conn_slots.h): they may take them.
		if err := o.objs.StateTracepoint.Update(uint32(0), uint32(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set state_tracepoint: %w", err)
		}
	}

	o.Features.OwnerOfAccepted = OwnerAtAccept
	if fallback {
		// The tracepoints remember the sockets they are done with where
		// netflow_state tells them when a socket closes. The variable is
		// set before the first of them loads.
		if err := spec.Variables["settled_cache"].Set(boolU32(o.Features.EndsWithoutFINOrRST)); err != nil {
			return fmt.Errorf("set settled_cache: %w", err)
		}
		sendErr, recvErr := optional(SendProgram), optional(RecvProgram)
		switch {
		case sendErr == nil && recvErr == nil:
			o.Features.OwnerOfAccepted = OwnerAtFirstIO
		case recvErr == nil:
			o.Features.OwnerOfAccepted = OwnerAtFirstRead
			o.Unavailable = append(o.Unavailable, Unavailable{Feature: ownerFeature, Program: SendProgram,
				Absent: readOnlyAbsent, Err: errors.Join(acceptErr, sendErr)})
		case sendErr == nil:
			o.Features.OwnerOfAccepted = OwnerAtFirstSend
			o.Unavailable = append(o.Unavailable, Unavailable{Feature: ownerFeature, Program: RecvProgram,
				Absent: sendOnlyAbsent, Err: errors.Join(acceptErr, recvErr)})
		default:
			o.Features.OwnerOfAccepted = OwnerUnknown
			o.Unavailable = append(o.Unavailable, Unavailable{Feature: ownerFeature,
				Program: strings.Join([]string{AcceptProgram, SendProgram, RecvProgram}, ", "),
				Absent:  ownerAbsent, Err: errors.Join(acceptErr, sendErr, recvErr)})
		}
	}

	if err := optional(CgroupProgram); err != nil {
		o.Unavailable = append(o.Unavailable, Unavailable{Feature: cgroupFeature, Program: CgroupProgram, Absent: cgroupAbsent, Err: err})
	} else {
		o.Features.CgroupCreation = true
	}
	return nil
}

// probeAttach attaches a tracing program and detaches it at once: a kernel
// may load fexit programs and still refuse to attach them.
func probeAttach(p *ebpf.Program) error {
	l, err := link.AttachTracing(link.TracingOptions{Program: p})
	if err != nil {
		return fmt.Errorf("attach: %w", wrapPermission(err))
	}
	return l.Close()
}

// loadProgram loads one of the optional programs of spec. LoadAndAssign
// loads only what the struct names (and the maps that uses, unless opts
// replaces them), not a second ring buffer.
func loadProgram(spec *ebpf.CollectionSpec, name string, opts *ebpf.CollectionOptions) (*ebpf.Program, error) {
	if spec.Programs[name] == nil {
		return nil, fmt.Errorf("no program %s", name)
	}
	// struct { P *ebpf.Program `ebpf:"<name>"` }
	t := reflect.StructOf([]reflect.StructField{{
		Name: "P", Type: reflect.TypeFor[*ebpf.Program](), Tag: reflect.StructTag(`ebpf:"` + name + `"`),
	}})
	v := reflect.New(t)
	if err := spec.LoadAndAssign(v.Interface(), opts); err != nil {
		return nil, err
	}
	return v.Elem().Field(0).Interface().(*ebpf.Program), nil
}
