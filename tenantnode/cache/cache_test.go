package cache

import (
	"slices"
	"testing"
)

func TestLRU_Oldest(t *testing.T) {
	c := New[string, int]()
	for i, k := range []string{"a", "b", "c", "d"} {
		c.Add(k, i)
	}
	c.Get("a") // a becomes the newest: order b, c, d, a

	t.Run("least recently used first", func(t *testing.T) {
		if got, want := c.Oldest(2, func(int) bool { return true }), []int{1, 2}; !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
	t.Run("skips what take refuses", func(t *testing.T) {
		got := c.Oldest(2, func(v int) bool { return v != 1 })
		if want := []int{2, 3}; !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
	t.Run("never evicts on its own", func(t *testing.T) {
		c.Remove("c")
		if c.Len() != 3 {
			t.Fatalf("got len %d, want 3", c.Len())
		}
		if _, ok := c.Peek("c"); ok {
			t.Fatal("removed key still present")
		}
	})
}
