//go:build linux

// Package bpftest drives the kernel programs of package bpf directly, for
// this module's tests and benchmarks: the cgroup_skb programs for
// BPF_PROG_TEST_RUN, and a filler program that writes records into their
// ring buffer to measure the receiver without the network in the way.
// Nothing here ships in the collector.
package bpftest

import (
	"github.com/cilium/ebpf"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/objaccess"
)

// The filler's generated filler_bpfel.{go,o} are committed, like package
// bpf's; `make generate` runs this with the same pinned clang.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu -I../../../bpf" -target bpfel -tags linux filler filler.c

// Programs returns the loaded ingress and egress programs of o.
func Programs(o *bpf.Objects) (ingress, egress *ebpf.Program) {
	h := objaccess.Of(o)
	return h.Ingress, h.Egress
}
