// Package placement decides which tenant node serves a tenant: for a new
// or orphaned tenant, for every tenant of a draining node, and to even out
// an unbalanced fleet. It is pure: it sees the fleet as candidates and
// returns decisions; the control plane carries them out through Raft.
package placement

import (
	"cmp"
	"errors"
	"slices"
)

// Candidate is a node as placement sees it.
type Candidate struct {
	ID string
	// Accepting is false for a draining or down node.
	Accepting bool
	// Alive means the node holds a current lease.
	Alive    bool
	Capacity int
	// Assigned is how many tenants the registry assigns to the node.
	Assigned int
	// Load is the node's reported load (requests per second); ties between
	// equally full nodes go to the less loaded one.
	Load float64
}

// ErrNoNode is returned when no alive, accepting node exists.
var ErrNoNode = errors.New("no tenant node is available")

// fill is how full a node is: assigned tenants per unit of capacity.
func (c Candidate) fill() float64 {
	if c.Capacity <= 0 {
		return float64(c.Assigned + 1)
	}
	return float64(c.Assigned) / float64(c.Capacity)
}

func usable(c Candidate, exclude string) bool {
	return c.Accepting && c.Alive && c.ID != exclude
}

// better orders candidates: least full, then least loaded, then by id.
func better(a, b Candidate) int {
	if c := cmp.Compare(a.fill(), b.fill()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Load, b.Load); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// Choose returns the node that should take one more tenant, never exclude.
// A node past its capacity is chosen only when every node is.
func Choose(cands []Candidate, exclude string) (string, error) {
	best := -1
	for i, c := range cands {
		if usable(c, exclude) && (best < 0 || better(c, cands[best]) < 0) {
			best = i
		}
	}
	if best < 0 {
		return "", ErrNoNode
	}
	return cands[best].ID, nil
}

// Move is one step of a plan: tenant goes from one node to another.
type Move struct {
	Tenant string `json:"tenant"`
	From   string `json:"from"`
	To     string `json:"to"`
}

// Drain plans moving every tenant of node from to the other nodes, filling
// the least full first.
func Drain(cands []Candidate, from string, tenants []string) ([]Move, error) {
	cands = slices.Clone(cands)
	moves := make([]Move, 0, len(tenants))
	for _, t := range tenants {
		to, err := Choose(cands, from)
		if err != nil {
			return moves, err
		}
		moves = append(moves, Move{Tenant: t, From: from, To: to})
		bump(cands, to, from)
	}
	return moves, nil
}

// bump records one tenant moving from one candidate to another.
func bump(cands []Candidate, to, from string) {
	for i := range cands {
		switch cands[i].ID {
		case to:
			cands[i].Assigned++
		case from:
			cands[i].Assigned--
		}
	}
}

// Rebalance plans moves from the fullest to the least full alive,
// accepting nodes until no move would make the spread smaller. tenants maps
// each node to the tenants it owns (moved in the order given). At most max
// moves are planned.
func Rebalance(cands []Candidate, tenants map[string][]string, max int) []Move {
	cands = slices.Clone(cands)
	next := map[string]int{}
	var moves []Move
	for len(moves) < max {
		hi, lo := -1, -1
		for i, c := range cands {
			if !c.Alive {
				continue
			}
			if next[c.ID] < len(tenants[c.ID]) && (hi < 0 || better(c, cands[hi]) > 0) {
				hi = i
			}
			if c.Accepting && (lo < 0 || better(c, cands[lo]) < 0) {
				lo = i
			}
		}
		if hi < 0 || lo < 0 || hi == lo || !worthMoving(cands[hi], cands[lo]) {
			return moves
		}
		from, to := cands[hi].ID, cands[lo].ID
		moves = append(moves, Move{Tenant: tenants[from][next[from]], From: from, To: to})
		next[from]++
		bump(cands, to, from)
	}
	return moves
}

// worthMoving reports whether moving one tenant from a to b leaves them
// closer to even than they are.
func worthMoving(a, b Candidate) bool {
	a2, b2 := a, b
	a2.Assigned--
	b2.Assigned++
	before := a.fill() - b.fill()
	after := b2.fill() - a2.fill()
	return after < before
}
