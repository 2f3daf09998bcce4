//go:build linux

package bpf

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/stretchr/testify/assert"

	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
)

// TestKernelFeatures logs what this kernel gives the programs, and what it
// lacks, as Load probes them; make test-kernels prints the line of each
// kernel under its table. An optional program that did not load for a
// field of ours that this kernel's BTF lacks is our bug, not the kernel's
// lack: every such read is guarded (bpf_core_field_exists and the like),
// and a missed one would leave the feature out on that kernel in silence
// (and the tests that need the program skipped).
func TestKernelFeatures(t *testing.T) {
	testenv.RequireRoot(t)
	objs, err := testLoad(Options{RingBufferSize: 1 << 16})
	require.NoError(t, err)
	defer objs.Close()
	f, err := json.Marshal(objs.Features)
	require.NoError(t, err)
	t.Logf("kernel features: %s", f)
	for _, u := range objs.Unavailable {
		t.Logf("kernel lacks: %s: absent: %s (%v)", u.Feature, u.Absent, u.Err)
		if u.Err != nil {
			assert.NotContains(t, u.Err.Error(), "bad CO-RE relocation", "%s: a kernel type read without a guard", u.Program)
		}
	}
}

// The atomics probe holds what a kernel before 5.12 refuses: a fetch-or
// (BPF_ATOMIC with BPF_OR | BPF_FETCH in its immediate), not the atomic add
// that every kernel has.
func TestAtomicsProbeIsAFetchOr(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, atomicsProbe().Marshal(&buf, binary.LittleEndian))
	raw := buf.Bytes()
	require.Len(t, raw, 5*8)
	ins := raw[2*8 : 3*8]
	assert.Equal(t, byte(0xc3), ins[0], "BPF_STX | BPF_ATOMIC | BPF_W")
	assert.Equal(t, uint32(0x40|0x01), binary.LittleEndian.Uint32(ins[4:]), "BPF_OR | BPF_FETCH")
}

// The object for kernels without atomic operations has none of them but
// the atomic add that every kernel has: a kernel before 5.12 rejects an
// object with one anywhere, before it looks at which code is reachable.
func TestSpinlockObjectHasNoAtomics(t *testing.T) {
	for _, o := range []struct {
		name    string
		load    func() (*ebpf.CollectionSpec, error)
		atomics bool
	}{{"netflow", loadNetflow, true}, {"netflowSpinlock", loadNetflowSpinlock, false}} {
		spec, err := o.load()
		require.NoError(t, err)
		found := map[string]int{}
		for name, p := range spec.Programs {
			for _, ins := range p.Instructions {
				if op := ins.OpCode.AtomicOp(); op != asm.InvalidAtomic && op != asm.AddAtomic {
					found[name]++
				}
			}
		}
		if o.atomics {
			assert.NotEmpty(t, found, "%s: the once-only flag is an atomic fetch-or", o.name)
		} else {
			assert.Empty(t, found, "%s: atomic instructions other than add, by program", o.name)
		}
	}
}
