// Package bounded is a cache for the read loop's hot path: a map of at most
// a fixed number of entries that starts over, empty, when it is full.
//
// It suits values that are cheap to compute again and keys that repeat
// (executable names, addresses, cgroup ids): a lookup costs one map access,
// without the list that a least-recently-used cache updates on every hit,
// and memory stays bounded however many keys a host sees over time.
package bounded

// Map holds at most its limit of entries. The zero Map holds none. Not
// safe for concurrent use.
type Map[K comparable, V any] struct {
	limit int
	m     map[K]V
}

// NewMap returns a Map of at most limit entries.
func NewMap[K comparable, V any](limit int) Map[K, V] {
	return Map[K, V]{limit: limit}
}

// Get returns the value of key, if the map holds it.
func (c *Map[K, V]) Get(key K) (V, bool) {
	v, ok := c.m[key]
	return v, ok
}

// Put adds key with its value; a full map is emptied first.
func (c *Map[K, V]) Put(key K, v V) {
	if c.limit <= 0 {
		return
	}
	if c.m == nil || len(c.m) >= c.limit {
		c.m = make(map[K]V, min(c.limit, 64))
	}
	c.m[key] = v
}

// Len is how many entries the map holds.
func (c *Map[K, V]) Len() int { return len(c.m) }
