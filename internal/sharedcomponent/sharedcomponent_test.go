package sharedcomponent

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
)

type counting struct {
	starts, stops int
	startErr      error
}

func (c *counting) Start(context.Context, component.Host) error { c.starts++; return c.startErr }
func (c *counting) Shutdown(context.Context) error              { c.stops++; return nil }

func TestOneInstancePerKey(t *testing.T) {
	m := NewMap[string, *counting]()
	made := 0
	create := func() (*counting, error) { made++; return &counting{}, nil }
	a, err := m.LoadOrStore("cfg", create)
	require.NoError(t, err)
	b, err := m.LoadOrStore("cfg", create)
	require.NoError(t, err)
	other, err := m.LoadOrStore("other", create)
	require.NoError(t, err)
	assert.Same(t, a, b)
	assert.NotSame(t, a, other)
	assert.Equal(t, 2, made)

	ctx, host := context.Background(), componenttest.NewNopHost()
	require.NoError(t, a.Start(ctx, host))
	require.NoError(t, b.Start(ctx, host))
	assert.Equal(t, 1, a.Unwrap().starts, "started once for both pipelines")
	require.NoError(t, a.Shutdown(ctx))
	require.NoError(t, b.Shutdown(ctx))
	assert.Equal(t, 1, a.Unwrap().stops, "shut down once")
	assert.Equal(t, 1, m.Len(), "removed at shutdown; the other stays")

	c, err := m.LoadOrStore("cfg", create)
	require.NoError(t, err)
	assert.NotSame(t, a, c, "a new instance after shutdown")
}

func TestStartErrorForEveryPipeline(t *testing.T) {
	m := NewMap[int, *counting]()
	boom := errors.New("boom")
	c, err := m.LoadOrStore(1, func() (*counting, error) { return &counting{startErr: boom}, nil })
	require.NoError(t, err)
	require.ErrorIs(t, c.Start(context.Background(), componenttest.NewNopHost()), boom)
	require.ErrorIs(t, c.Start(context.Background(), componenttest.NewNopHost()), boom)
	assert.Equal(t, 1, c.Unwrap().starts)
}

func TestCreateError(t *testing.T) {
	m := NewMap[int, *counting]()
	boom := errors.New("boom")
	_, err := m.LoadOrStore(1, func() (*counting, error) { return nil, boom })
	require.ErrorIs(t, err, boom)
	assert.Zero(t, m.Len())
}
