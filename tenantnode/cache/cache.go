// Package cache keeps the active tenants of a node in least-recently-used
// order. It only orders and counts; it never evicts on its own, because
// stopping a tenant is I/O that the caller does outside its locks.
package cache

import (
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// LRU orders values by last use. It is not safe for concurrent use: the
// caller guards it with its own (short, I/O-free) lock.
type LRU[K comparable, V any] struct {
	l *simplelru.LRU[K, V]
}

// unbounded is the capacity given to simplelru: the caller decides when
// and what to evict, so the list itself never drops an entry.
const unbounded = 1 << 30

// New returns an empty LRU.
func New[K comparable, V any]() *LRU[K, V] {
	l, err := simplelru.NewLRU[K, V](unbounded, nil)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &LRU[K, V]{l: l}
}

// Get returns the value for k and marks it most recently used.
func (c *LRU[K, V]) Get(k K) (V, bool) { return c.l.Get(k) }

// Peek returns the value for k without changing its position.
func (c *LRU[K, V]) Peek(k K) (V, bool) { return c.l.Peek(k) }

// Add inserts or replaces k as the most recently used value.
func (c *LRU[K, V]) Add(k K, v V) { c.l.Add(k, v) }

// Remove drops k.
func (c *LRU[K, V]) Remove(k K) { c.l.Remove(k) }

// Len is the number of values held.
func (c *LRU[K, V]) Len() int { return c.l.Len() }

// Oldest returns up to n values, least recently used first, for which
// take returns true. It walks from the oldest entry and stops as soon as it
// has n.
func (c *LRU[K, V]) Oldest(n int, take func(V) bool) []V {
	if n <= 0 {
		return nil
	}
	var out []V
	for _, v := range c.l.Values() {
		if take(v) {
			out = append(out, v)
			if len(out) == n {
				break
			}
		}
	}
	return out
}

// Values returns every value, least recently used first.
func (c *LRU[K, V]) Values() []V { return c.l.Values() }
