//go:build linux

package bpftest

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
)

func TestProgramsAreTheLoadedOnes(t *testing.T) {
	testenv.RequireRoot(t)
	_, _, err := Programs()
	require.ErrorContains(t, err, "holds 0 netflow_ingress and 0 netflow_egress programs")

	objs, err := bpf.Load(bpf.Options{RingBufferSize: 1 << 16})
	require.NoError(t, err)
	ingress, egress, err := Programs()
	require.NoError(t, err)
	for p, name := range map[*ebpf.Program]string{ingress: "netflow_ingress", egress: "netflow_egress"} {
		info, err := p.Info()
		require.NoError(t, err)
		assert.Equal(t, name, info.Name)
		assert.Equal(t, ebpf.CGroupSKB, p.Type())
		require.NoError(t, p.Close())
	}

	require.NoError(t, objs.Close())
	_, _, err = Programs()
	assert.Error(t, err, "the programs went with their objects")
}

func TestFillerCountsWhatDoesNotFit(t *testing.T) {
	testenv.RequireRoot(t)
	e := bpf.Event{
		Source: netip.MustParseAddrPort("10.0.0.1:40000"), Destination: netip.MustParseAddrPort("10.0.0.2:443"),
		Direction: bpf.DirectionOutgoing, EndBy: bpf.EndByLocal, EndReason: bpf.EndFIN, Cookie: 7,
	}
	f, err := NewFiller(4096, e)
	require.NoError(t, err)
	defer f.Close()
	rd, err := f.NewReader()
	require.NoError(t, err)
	defer rd.Close()

	require.NoError(t, f.Fill(100))
	rd.SetDeadline(time.Now().Add(time.Second))
	var read int
	for ; ; read++ {
		rec, err := rd.Read()
		if err != nil {
			break
		}
		var got bpf.Event
		require.NoError(t, got.Decode(rec.RawSample))
		assert.Equal(t, e.Source, got.Source)
		assert.Equal(t, uint64(8+read), got.Cookie, "each copy a socket of its own")
	}
	lost, err := f.Lost()
	require.NoError(t, err)
	assert.Positive(t, read)
	assert.Positive(t, lost, "100 records do not fit in 4 KiB")
	assert.Equal(t, uint64(100), uint64(read)+lost)
}
