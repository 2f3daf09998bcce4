//go:build linux

// Package bpftest drives kernel programs for this module's tests and
// benchmarks: it finds the cgroup_skb programs of package bpf that this
// process loaded, for BPF_PROG_TEST_RUN, and it has a filler program that
// writes records into a ring buffer to measure the receiver's read loop
// without the network in the way. Nothing here ships in the collector, and
// package bpf exports nothing for it.
package bpftest

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/bpfids"
)

// The filler's generated filler_bpfel.{go,o} are committed, like package
// bpf's; `make generate` runs this with the same pinned clang.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu -I../../../bpf" -target bpfel -tags linux filler filler.c

// The kernel's names of package bpf's cgroup_skb programs (at most 15
// characters: BPF_OBJ_NAME_LEN).
const (
	ingressName = "netflow_ingress"
	egressName  = "netflow_egress"
)

// Programs returns new handles of the ingress and egress programs of the
// one bpf.Objects that this process has loaded, found by kernel id among
// the BPF objects the process holds (as bpftool would find them). The
// caller closes them. Needs CAP_SYS_ADMIN (BPF_PROG_GET_FD_BY_ID).
func Programs() (ingress, egress *ebpf.Program, err error) {
	held, err := bpfids.Held(os.Getpid())
	if err != nil {
		return nil, nil, fmt.Errorf("list this process's BPF objects: %w", err)
	}
	found := map[string][]*ebpf.Program{}
	for _, id := range held.Progs {
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if errors.Is(err, os.ErrNotExist) {
			continue // closed meanwhile
		}
		if err != nil {
			return nil, nil, fmt.Errorf("open program %d: %w", id, err)
		}
		info, err := p.Info()
		if err != nil || p.Type() != ebpf.CGroupSKB || (info.Name != ingressName && info.Name != egressName) {
			p.Close()
			continue
		}
		found[info.Name] = append(found[info.Name], p)
	}
	if len(found[ingressName]) == 1 && len(found[egressName]) == 1 {
		return found[ingressName][0], found[egressName][0], nil
	}
	for _, ps := range found {
		for _, p := range ps {
			p.Close()
		}
	}
	return nil, nil, fmt.Errorf("this process holds %d %s and %d %s programs; load exactly one bpf.Objects",
		len(found[ingressName]), ingressName, len(found[egressName]), egressName)
}
