package bpf

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDirectionText(t *testing.T) {
	for _, name := range []string{"incoming", "outgoing", "unknown"} {
		var d Direction
		require.NoError(t, d.UnmarshalText([]byte(name)))
		text, err := d.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, name, string(text))
		assert.Equal(t, name, d.String())
	}
	var d Direction
	require.EqualError(t, d.UnmarshalText([]byte("Incoming")), `"Incoming" is not incoming, outgoing or unknown`)
	assert.Equal(t, "unknown", Direction(7).String())
}
