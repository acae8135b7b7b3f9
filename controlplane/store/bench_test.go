package store

import (
	"fmt"
	"log/slog"
	"slices"
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

// BenchmarkStore_ProposeCreateTenant encodes an audited create_tenant
// command and checks it, as the leader does before proposing each write.
func BenchmarkStore_ProposeCreateTenant(b *testing.B) {
	s, err := Open(b.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	now := time.Now().UTC()
	audit := []cluster.AuditEntry{{Actor: "operator:57d3fb0cde50", Action: "tenant.create", Target: "tenant:acme", IP: "127.0.0.1"}}
	i := 0
	for b.Loop() {
		i++
		p := CreateTenant{Tenant: cluster.Tenant{ID: fmt.Sprintf("t-%d", i), Durability: cluster.DurabilityAsync, Owner: "u-0123456789abcdef"}}
		cmd, err := EncodeAuditedCommand(CmdCreateTenant, "0123456789abcdef0123456789abcdef", now, p, audit)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.CheckCommand(cmd); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStore_TenantLookup100k looks tenants up in a registry of
// 100,000: the control-plane node's own share of a route or tenant lookup,
// without the HTTP round trip.
func BenchmarkStore_TenantLookup100k(b *testing.B) {
	const tenants = 100_000
	s, err := Open(b.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	now := time.Now()
	indexes, data := make([]uint64, 0, 64), make([][]byte, 0, 64)
	for i := range tenants {
		indexes = append(indexes, uint64(i+1))
		data = append(data, NewCommand(CmdCreateTenant, "", now, CreateTenant{Tenant: cluster.Tenant{ID: fmt.Sprintf("r-%d", i)}}))
		if len(data) == cap(data) || i == tenants-1 {
			if _, errs := s.ApplyBatch(indexes, data); errs[0] != nil {
				b.Fatal(errs[0])
			}
			indexes, data = indexes[:0], data[:0]
		}
	}
	lat := make([]time.Duration, 0, b.N)
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("r-%d", (i*7919)%tenants)
		start := time.Now()
		if _, err := s.Tenant(id); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
