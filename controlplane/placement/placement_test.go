package placement

import (
	"errors"
	"testing"
)

func node(id string, assigned, capacity int) Candidate {
	return Candidate{ID: id, Accepting: true, Alive: true, Capacity: capacity, Assigned: assigned}
}

func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cands   []Candidate
		exclude string
		want    string
		err     error
	}{
		{"least full", []Candidate{node("a", 5, 10), node("b", 2, 10)}, "", "b", nil},
		{"relative to capacity", []Candidate{node("a", 5, 100), node("b", 2, 10)}, "", "a", nil},
		{"load breaks ties", []Candidate{{ID: "a", Accepting: true, Alive: true, Capacity: 10, Load: 9}, {ID: "b", Accepting: true, Alive: true, Capacity: 10, Load: 1}}, "", "b", nil},
		{"id breaks the rest", []Candidate{node("b", 1, 10), node("a", 1, 10)}, "", "a", nil},
		{"skips draining", []Candidate{{ID: "a", Alive: true, Capacity: 10}, node("b", 9, 10)}, "", "b", nil},
		{"skips dead", []Candidate{{ID: "a", Accepting: true, Capacity: 10}, node("b", 9, 10)}, "", "b", nil},
		{"skips excluded", []Candidate{node("a", 0, 10), node("b", 9, 10)}, "a", "b", nil},
		{"over capacity only when all are", []Candidate{node("a", 12, 10), node("b", 11, 10)}, "", "b", nil},
		{"nothing usable", []Candidate{{ID: "a", Capacity: 10}}, "", "", ErrNoNode},
		{"empty fleet", nil, "", "", ErrNoNode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Choose(tc.cands, tc.exclude)
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestDrain(t *testing.T) {
	cands := []Candidate{node("a", 4, 10), node("b", 0, 10), node("c", 1, 10)}
	moves, err := Drain(cands, "a", []string{"t1", "t2", "t3", "t4"})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, m := range moves {
		if m.From != "a" || m.To == "a" {
			t.Fatalf("bad move %+v", m)
		}
		count[m.To]++
	}
	if len(moves) != 4 || count["b"] != 3 || count["c"] != 1 {
		t.Fatalf("got %v, want b to take 3 and c 1 (filling the least full first)", count)
	}
	if _, err := Drain([]Candidate{node("a", 1, 10)}, "a", []string{"t1"}); !errors.Is(err, ErrNoNode) {
		t.Fatalf("draining the only node: got %v", err)
	}
}

func TestRebalance(t *testing.T) {
	cands := []Candidate{node("a", 6, 10), node("b", 0, 10), node("c", 0, 10)}
	tenants := map[string][]string{"a": {"t1", "t2", "t3", "t4", "t5", "t6"}}
	moves := Rebalance(cands, tenants, 100)
	after := map[string]int{"a": 6}
	for _, m := range moves {
		after[m.From]--
		after[m.To]++
	}
	if after["a"] != 2 || after["b"] != 2 || after["c"] != 2 {
		t.Fatalf("after %d moves: %v, want 2 each", len(moves), after)
	}
	if again := Rebalance([]Candidate{node("a", 2, 10), node("b", 2, 10), node("c", 2, 10)}, tenants, 100); len(again) != 0 {
		t.Fatalf("a balanced fleet got moves: %v", again)
	}
	if capped := Rebalance(cands, tenants, 1); len(capped) != 1 {
		t.Fatalf("max not honoured: %v", capped)
	}
}
