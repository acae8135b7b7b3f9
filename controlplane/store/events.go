package store

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/segmentio/encoding/json"

	"github.com/pbe/pbe/cluster"
)

// The event log: what the registry's commands did, in apply order, kept
// for EventRetention. Handlers describe their own outcome (a.event), and
// the events are written with the command, only when it succeeds, so the
// log is as deterministic as the rest of the state and every node holds
// the same one.

// EventRetention is how long events are kept, in command time.
const EventRetention = 7 * 24 * time.Hour

var prefixEvent = []byte("v/")

func eventKey(index uint64, n int) []byte {
	return fmt.Appendf(slices.Clip(prefixEvent), "%020d/%04d", index, n)
}

// Event types.
const (
	EventTenantCreated        = "tenant.created"
	EventTenantDeleted        = "tenant.deleted"
	EventTenantRestored       = "tenant.restored"
	EventTenantPurged         = "tenant.purged"
	EventTenantPlaced         = "tenant.placed"
	EventTenantMoved          = "tenant.moved"
	EventTenantSuspended      = "tenant.suspended"
	EventTenantUnsuspended    = "tenant.unsuspended"
	EventTenantQuota          = "tenant.quota_changed"
	EventTenantDomains        = "tenant.domains_changed"
	EventTenantPITR           = "tenant.point_in_time_restored"
	EventTenantBackupRestored = "tenant.backup_restored"
	EventTenantArchived       = "tenant.archived"
	EventTenantUnarchived     = "tenant.unarchived"
	EventTenantActivated      = "tenant.activated"
	EventTenantEvicted        = "tenant.evicted"
	EventReplicationLagging   = "replication.lagging"
	EventQuotaExceeded        = "quota.exceeded"
	EventReplicationRecovered = "replication.recovered"
	EventBackupCreated        = "backup.created"
	EventBackupFailed         = "backup.failed"
	EventNodeJoined           = "node.joined"
	EventNodeActive           = "node.active"
	EventNodeDraining         = "node.draining"
	EventNodeDrained          = "node.drained"
	EventNodeDown             = "node.down"
	EventUserSignedUp         = "user.signed_up"
	EventUserVerified         = "user.verified"
	EventUserSuspended        = "user.suspended"
	EventUserUnsuspended      = "user.unsuspended"
	EventUserDeleted          = "user.deleted"
	EventQuotaRequested       = "quota.requested"
	EventQuotaApproved        = "quota.approved"
	EventQuotaRejected        = "quota.rejected"
)

// event notes an event of this command, written if the command succeeds.
func (a *applyCtx) event(e cluster.Event) {
	a.events = append(a.events, e)
}

// writeEvents records the command's events and prunes expired ones.
func writeEvents(a *applyCtx) error {
	for i, e := range a.events {
		e.ID, e.Time = fmt.Sprintf("%020d-%04d", a.index, i), a.now
		if err := setJSON(a.txn, eventKey(a.index, i), e); err != nil {
			return err
		}
	}
	if len(a.events) == 0 {
		return nil
	}
	if err := pruneEvents(a); err != nil {
		return err
	}
	if a.eventHorizon != nil {
		a.eventHorizon.recorded(a.now)
	}
	return nil
}

// pruneEvents deletes up to pruneBatch events older than EventRetention.
func pruneEvents(a *applyCtx) error {
	return pruneOld(a.txn, prefixEvent, a.now.Add(-EventRetention), a.eventHorizon)
}

// pruneOld deletes up to pruneBatch records under prefix whose "time" is
// before cutoff. The records are keyed in the order they were written
// (events, audit entries), so it reads the expired ones and one more, and
// not even that while the horizon says none can have expired: an iterator
// in a write transaction first sorts all of the transaction's pending
// writes, which for a batch of creates applied in one transaction made
// every create's pruning cost grow with the batch.
func pruneOld(txn *badger.Txn, prefix []byte, cutoff time.Time, h *timeHorizon) error {
	if h == nil {
		h = &timeHorizon{}
	}
	if h.none(cutoff) {
		return nil
	}
	var old [][]byte
	next := timeHorizon{known: true, empty: true}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Rewind(); it.Valid(); it.Next() {
		var r struct {
			Time time.Time `json:"time"`
		}
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &r) }); err != nil {
			it.Close()
			return fmt.Errorf("decode %s: %w", it.Item().Key(), err)
		}
		if !r.Time.Before(cutoff) {
			next = timeHorizon{known: true, oldest: r.Time}
			break
		}
		if len(old) == pruneBatch {
			next = timeHorizon{} // more left than one apply prunes
			break
		}
		old = append(old, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range old {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	*h = next
	return nil
}

// EventFilter selects events.
type EventFilter struct {
	// After keeps events after this id ("" for all retained).
	After string
	// Types keeps these types (all when empty); a type ending in ".*"
	// keeps a family ("tenant.*").
	Types []string
	// Keep, when set, decides per event (a customer sees their own).
	Keep func(cluster.Event) bool
	// Limit bounds the result.
	Limit int
}

// Events returns events in order, and the id of the last event it read
// (kept or not; f.After when it read none), to resume from.
func (s *Store) Events(f EventFilter) ([]cluster.Event, string, error) {
	out := []cluster.Event{}
	last := f.After
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixEvent, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		seek := slices.Clip(prefixEvent)
		var after []byte
		if f.After != "" {
			after = append(slices.Clip(prefixEvent), strings.Replace(f.After, "-", "/", 1)...)
			seek = after
		}
		for it.Seek(seek); it.Valid() && len(out) < f.Limit; it.Next() {
			if after != nil && bytes.Compare(it.Item().Key(), after) <= 0 {
				continue
			}
			var e cluster.Event
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &e) }); err != nil {
				return err
			}
			last = e.ID
			if matchType(f.Types, e.Type) && (f.Keep == nil || f.Keep(e)) {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, last, err
}

func matchType(types []string, t string) bool {
	if len(types) == 0 {
		return true
	}
	for _, want := range types {
		if want == t || strings.HasSuffix(want, ".*") && strings.HasPrefix(t, strings.TrimSuffix(want, "*")) {
			return true
		}
	}
	return false
}

// LastEventID returns the id of the newest retained event ("" for none).
func (s *Store) LastEventID() (string, error) {
	var id string
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixEvent, Reverse: true})
		defer it.Close()
		it.Seek(append(slices.Clip(prefixEvent), 0xff))
		if it.Valid() {
			id = strings.Replace(string(bytes.TrimPrefix(it.Item().Key(), prefixEvent)), "/", "-", 1)
		}
		return nil
	})
	return id, err
}

// EventsChanged returns a channel closed at the next applied command that
// records events.
func (s *Store) EventsChanged() <-chan struct{} {
	s.eventsMu.Lock()
	defer s.eventsMu.Unlock()
	return s.eventsCh
}

// eventsWritten wakes the waiters of EventsChanged.
func (s *Store) eventsWritten() {
	s.eventsMu.Lock()
	close(s.eventsCh)
	s.eventsCh = make(chan struct{})
	s.eventsMu.Unlock()
}

// RecordEvents is the payload of CmdRecordEvents: events of work done
// outside the state machine (a scheduled backup), published through the
// log like the others.
type RecordEvents struct {
	Events []cluster.Event `json:"events"`
}

func applyRecordEvents(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[RecordEvents](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range p.Events {
		if e.Type == "" || len(e.Type) > 60 {
			return nil, cluster.Errorf(cluster.ErrInvalidInput, "an event needs a type of at most 60 bytes"), nil
		}
	}
	for _, e := range p.Events {
		a.event(e)
	}
	return nil, nil, nil
}
