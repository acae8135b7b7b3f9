package store

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
)

// BenchmarkStore_ApplyCreateTenant applies create_tenant commands in
// index order, as the Raft FSM does, one entry at a time and in batches of
// 64 (Raft's largest append): the state machine's share of a write.
func BenchmarkStore_ApplyCreateTenant(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := Open(b.TempDir(), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			now := time.Now()
			var index uint64
			indexes, data := make([]uint64, 0, batch), make([][]byte, 0, batch)
			apply := func() {
				_, errs := s.ApplyBatch(indexes, data)
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
				indexes, data = indexes[:0], data[:0]
			}
			for b.Loop() {
				index++
				indexes = append(indexes, index)
				data = append(data, NewCommand(CmdCreateTenant, fmt.Sprintf("req-%d", index), now, CreateTenant{Tenant: cluster.Tenant{ID: fmt.Sprintf("t-%d", index)}}))
				if len(data) == batch {
					apply()
				}
			}
			if len(data) > 0 {
				apply()
			}
		})
	}
}
