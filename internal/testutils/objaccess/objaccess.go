//go:build linux

// Package objaccess hands the programs and maps that package bpf loads to
// this module's test support (internal/testutils/bpftest), which drives them directly
// with BPF_PROG_TEST_RUN and fills their ring buffer, without package bpf
// exporting them: its API is the receiver's. Package bpf sets Of.
package objaccess

import "github.com/cilium/ebpf"

// Handles are the loaded kernel objects that tests drive.
type Handles struct {
	Ingress, Egress *ebpf.Program // the cgroup_skb programs
	Events          *ebpf.Map     // the ring buffer
}

// Of returns the handles of a *bpf.Objects.
var Of func(objects any) Handles
