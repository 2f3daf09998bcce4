// Package sharedcomponent lets one component instance serve several
// pipelines: the collector creates a receiver once per pipeline it is in,
// and each creation with the same configuration gets the same instance,
// started once and shut down once. It is the collector's own
// internal/sharedcomponent (which the OTLP receiver uses) in small: that
// package is internal to the collector's modules and cannot be imported.
// Status reports are not relayed: this receiver makes none.
package sharedcomponent

import (
	"context"
	"sync"

	"go.opentelemetry.io/collector/component"
)

// Map holds the instances by key, such as the configuration's pointer.
type Map[K comparable, V component.Component] struct {
	mu         sync.Mutex
	components map[K]*Component[V]
}

// NewMap returns an empty Map.
func NewMap[K comparable, V component.Component]() *Map[K, V] {
	return &Map[K, V]{components: map[K]*Component[V]{}}
}

// LoadOrStore returns the instance of key, made by create if there is
// none yet.
func (m *Map[K, V]) LoadOrStore(key K, create func() (V, error)) (*Component[V], error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.components[key]; ok {
		return c, nil
	}
	v, err := create()
	if err != nil {
		return nil, err
	}
	c := &Component[V]{component: v, remove: func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.components, key)
	}}
	m.components[key] = c
	return c, nil
}

// Len is the number of instances held.
func (m *Map[K, V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.components)
}

// Component starts and shuts down the instance it wraps once, whichever
// pipeline asks first; every Start returns the first Start's error.
// Shutdown also removes it from its Map, so that a configuration reloaded
// later makes a new instance.
type Component[V component.Component] struct {
	component V
	remove    func()

	startOnce sync.Once
	startErr  error
	stopOnce  sync.Once
	stopErr   error
}

// Unwrap returns the instance.
func (c *Component[V]) Unwrap() V { return c.component }

// Start starts the instance if no pipeline has.
func (c *Component[V]) Start(ctx context.Context, host component.Host) error {
	c.startOnce.Do(func() { c.startErr = c.component.Start(ctx, host) })
	return c.startErr
}

// Shutdown shuts the instance down if no pipeline has.
func (c *Component[V]) Shutdown(ctx context.Context) error {
	c.stopOnce.Do(func() {
		c.stopErr = c.component.Shutdown(ctx)
		c.remove()
	})
	return c.stopErr
}
