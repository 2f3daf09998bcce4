package receiver

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// The configuration's kernel-facing values are the kernel programs' own.
func TestConfigMatchesTheKernelPrograms(t *testing.T) {
	assert.EqualValues(t, bpf.DirectionUnknown, DirectionUnknown)
	assert.EqualValues(t, bpf.DirectionIncoming, DirectionIncoming)
	assert.EqualValues(t, bpf.DirectionOutgoing, DirectionOutgoing)
	for _, d := range []bpf.Direction{bpf.DirectionUnknown, bpf.DirectionIncoming, bpf.DirectionOutgoing} {
		assert.Equal(t, d.String(), Direction(d).String())
	}
	assert.Equal(t, bpf.MaxDNSPayload, MaxDNSPayload)
	assert.Equal(t, bpf.DefaultRingBufferSize, DefaultRingBufferSize)
}

func TestDirectionText(t *testing.T) {
	for _, name := range []string{"incoming", "outgoing", "unknown"} {
		var d Direction
		require.NoError(t, d.UnmarshalText([]byte(name)))
		text, err := d.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, name, string(text))
	}
	var d Direction
	assert.EqualError(t, d.UnmarshalText([]byte("Incoming")), `"Incoming" is not incoming, outgoing or unknown`)
}
