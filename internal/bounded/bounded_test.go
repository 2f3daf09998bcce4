package bounded

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMapStartsOverWhenFull(t *testing.T) {
	m := NewMap[int, string](3)
	for i := range 3 {
		m.Put(i, "v")
	}
	assert.Equal(t, 3, m.Len())
	v, ok := m.Get(2)
	assert.True(t, ok)
	assert.Equal(t, "v", v)

	m.Put(3, "w") // full: the older entries go
	assert.Equal(t, 1, m.Len())
	_, ok = m.Get(0)
	assert.False(t, ok)
	v, ok = m.Get(3)
	assert.True(t, ok)
	assert.Equal(t, "w", v)

	m.Put(3, "x") // a key it holds is replaced, not added
	assert.Equal(t, 1, m.Len())
	v, _ = m.Get(3)
	assert.Equal(t, "x", v)
}

func TestZeroMapHoldsNothing(t *testing.T) {
	var m Map[string, int]
	m.Put("a", 1)
	_, ok := m.Get("a")
	assert.False(t, ok)
	assert.Zero(t, m.Len())
}
