package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/segmentio/encoding/json"

	"github.com/pbe/pbe/cluster"
)

// Request-id records.
const (
	// RequestTTL is how long a request id's result is kept, measured in
	// Command.Time: a retry later than this is applied as a new command.
	RequestTTL = 24 * time.Hour
	// pruneBatch bounds how many expired records one Apply deletes, so no
	// single entry does unbounded work; the backlog drains over later applies.
	pruneBatch = 16
)

// applyCtx is what a handler sees: the transaction of this entry, the
// decoded envelope, the Raft index and the command's time (in UTC).
type applyCtx struct {
	txn     *badger.Txn
	cmd     *Command
	index   uint64
	now     time.Time
	horizon *timeHorizon
	// eventHorizon and auditHorizon are horizon for the event and audit
	// logs.
	eventHorizon, auditHorizon *timeHorizon
	// changed lists tenants a command changed besides the one it names
	// (a user's quota applied to each of their tenants).
	changed []string
	// events describe what the command did (store/events.go).
	events []cluster.Event
}

// timeHorizon is what Apply knows of the oldest of a kind of time-ordered
// record (request records, events), derived from the state: when known,
// the time of the oldest record (or that there is none). It only ever
// skips a search for expired records that would find nothing, so it
// changes no outcome; it is forgotten whenever a transaction fails or the
// state is replaced.
type timeHorizon struct {
	known  bool
	empty  bool
	oldest time.Time
}

// none reports whether no request record can be older than cutoff.
func (h *timeHorizon) none(cutoff time.Time) bool {
	return h.known && (h.empty || !h.oldest.Before(cutoff))
}

// recorded notes a new request record of time t.
func (h *timeHorizon) recorded(t time.Time) {
	switch {
	case !h.known:
	case h.empty || t.Before(h.oldest):
		h.empty, h.oldest = false, t
	}
}

// handler applies one command type. It returns the command's result, or its
// own error, or a fatal error (storage failure, undecodable payload). It must
// not write to the transaction before it knows it returns no command error:
// a rejected command changes nothing.
type handler struct {
	apply func(a *applyCtx) (any, *cluster.Error, error)
	// result decodes a recorded result of this command type.
	result func(raw json.RawMessage) (any, error)
}

// handlers maps each command type at CommandVersion to its handler.
var handlers = map[string]handler{
	CmdCreateTenant:  {applyCreateTenant, resultAs[cluster.Tenant]},
	CmdDeleteTenant:  {applyDeleteTenant, resultAs[cluster.Tenant]},
	CmdRestoreTenant: {applyRestoreTenant, resultAs[cluster.Tenant]},
	CmdPurgeTenant:   {applyPurgeTenant, resultAs[cluster.Tenant]},
	CmdUpdateTenant:  {applyUpdateTenant, resultAs[cluster.Tenant]},
	CmdCreateToken:   {applyCreateToken, resultAs[cluster.Token]},
	CmdRevokeToken:   {applyRevokeToken, resultAs[cluster.Token]},
	CmdSetMember:     {applySetMember, resultAs[cluster.Member]},
	CmdRemoveMember:  {applyRemoveMember, resultAs[cluster.Member]},
	CmdRegisterNode:  {applyRegisterNode, resultAs[cluster.Node]},
	CmdSetNodeState:  {applySetNodeState, resultAs[cluster.Node]},
	CmdSetDomains:    {applySetDomains, resultAs[cluster.Tenant]},

	CmdCreateUser:         {applyCreateUser, resultAs[cluster.User]},
	CmdUpdateUser:         {applyUpdateUser, resultAs[cluster.User]},
	CmdDeleteUser:         {applyDeleteUser, resultAs[cluster.User]},
	CmdCreateSession:      {applyCreateSession, resultAs[cluster.Session]},
	CmdRotateSession:      {applyRotateSession, resultAs[cluster.Session]},
	CmdDeleteSession:      {applyDeleteSession, resultAs[cluster.Session]},
	CmdPruneSessions:      {applyPruneSessions, resultAs[PrunedSessions]},
	CmdCreateTicket:       {applyCreateTicket, resultAs[Ticket]},
	CmdRedeemTicket:       {applyRedeemTicket, resultAs[Ticket]},
	CmdCreateQuotaRequest: {applyCreateQuotaRequest, resultAs[cluster.QuotaRequest]},
	CmdDecideQuotaRequest: {applyDecideQuotaRequest, resultAs[cluster.QuotaRequest]},
	CmdAppendAudit:        {applyAppendAudit, resultAs[struct{}]},
	CmdAddSigningKey:      {applyAddSigningKey, resultAs[struct{}]},
	CmdCreateWebhook:      {applyCreateWebhook, resultAs[cluster.Webhook]},
	CmdDeleteWebhook:      {applyDeleteWebhook, resultAs[cluster.Webhook]},
	CmdAdvanceWebhook:     {applyAdvanceWebhook, resultAs[cluster.Webhook]},
	CmdRecordEvents:       {applyRecordEvents, resultAs[struct{}]},
}

func resultAs[T any](raw json.RawMessage) (any, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// outcome is a command's result as recorded for its request id. Value is
// the JSON of the result; Err is the command's own error. Apply returns the
// value decoded from Value on first apply as on a retry, so both return the
// same thing.
type outcome struct {
	Type  string          `json:"type"`
	Time  time.Time       `json:"time"`
	Value json.RawMessage `json:"value,omitempty"`
	Err   *cluster.Error  `json:"err,omitempty"`
	// changed is applyCtx.changed, for the change feed; not recorded.
	changed []string
	// events is how many events the command recorded.
	events int
}

// result returns the outcome as Apply's return values.
func (o outcome) result() (any, error) {
	if o.Err != nil {
		return nil, o.Err
	}
	if o.Value == nil {
		return nil, nil
	}
	v, err := handlers[o.Type].result(o.Value)
	if err != nil {
		return nil, fmt.Errorf("decode %s result: %w", o.Type, err)
	}
	return v, nil
}

// Apply applies the committed entry data at Raft index index and returns the
// command's result (a cluster.Tenant or cluster.Token value) or its own error
// (a *cluster.Error). The command and the new applied index are written in
// one transaction; a command error is recorded as applied and changes
// nothing else.
//
// An entry with index <= AppliedIndex is skipped: Apply returns the result
// recorded for its request id, if any, else nil, nil. An undecodable entry or
// an unknown type or version returns an error wrapping ErrUnknownCommand, and
// a storage failure an error too: for both IsFatal is true and the caller
// must stop the node. Apply is deterministic and must be called by one
// goroutine at a time, in index order.
func (s *Store) Apply(index uint64, data []byte) (any, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.stateMu.RLock()
	defer s.stateMu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.broken != nil {
		return nil, fmt.Errorf("apply index %d: store state is incomplete after a failed restore: %w", index, s.broken)
	}
	if index <= s.applied.Load() {
		return s.replayed(data)
	}
	cmd, err := DecodeCommand(data)
	if err != nil {
		return nil, fmt.Errorf("apply index %d: %w", index, err)
	}
	var out outcome
	err = s.db.Update(func(txn *badger.Txn) error {
		var err error
		out, err = applyTxn(&applyCtx{txn: txn, cmd: &cmd, index: index, now: cmd.Time.UTC(), horizon: &s.horizon, eventHorizon: &s.eventHorizon, auditHorizon: &s.auditHorizon})
		return err
	})
	if err != nil {
		s.horizon, s.eventHorizon, s.auditHorizon = timeHorizon{}, timeHorizon{}, timeHorizon{}
		return nil, fmt.Errorf("apply %s at index %d: %w", cmd.Type, index, err)
	}
	s.applied.Store(index)
	s.bumpAuth(&cmd)
	v, err := out.result()
	if err == nil {
		s.publish(cmd.Type, v, index, out.changed)
	}
	if out.events > 0 {
		s.eventsWritten()
	}
	return v, err
}

// ApplyBatch applies consecutive committed entries (indexes[i] holds
// data[i]) and returns each one's Apply results. It gives exactly what
// calling Apply on each entry in order gives, but commits them in one
// transaction: the Raft log's durability does not depend on the store's,
// and one commit per batch instead of per entry is what lets the control
// plane keep up with many concurrent writers. When the batch cannot be
// applied in one transaction (too large, an entry already applied or
// undecodable, a storage error), nothing of it is kept and the entries are
// applied one by one; after the first fatal error the remaining entries
// are not applied and get that error too.
func (s *Store) ApplyBatch(indexes []uint64, data [][]byte) ([]any, []error) {
	values, errs := make([]any, len(data)), make([]error, len(data))
	if len(data) > 1 && s.applyBatch(indexes, data, values, errs) {
		return values, errs
	}
	for i := range data {
		values[i], errs[i] = s.Apply(indexes[i], data[i])
		if s.IsFatal(errs[i]) {
			for j := i + 1; j < len(data); j++ {
				errs[j] = fmt.Errorf("apply index %d: not applied after the fatal error of index %d: %w", indexes[j], indexes[i], errs[i])
			}
			break
		}
	}
	return values, errs
}

// applyBatch is ApplyBatch's single transaction; it reports whether the
// batch was applied.
func (s *Store) applyBatch(indexes []uint64, data [][]byte, values []any, errs []error) bool {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.stateMu.RLock()
	defer s.stateMu.RUnlock()
	if s.closed || s.broken != nil || indexes[0] <= s.applied.Load() {
		return false
	}
	cmds := make([]Command, len(data))
	for i := range data {
		cmd, err := DecodeCommand(data[i])
		if err != nil {
			return false
		}
		cmds[i] = cmd
	}
	outs := make([]outcome, len(data))
	err := s.db.Update(func(txn *badger.Txn) error {
		for i := range cmds {
			var err error
			outs[i], err = applyTxn(&applyCtx{txn: txn, cmd: &cmds[i], index: indexes[i], now: cmds[i].Time.UTC(), horizon: &s.horizon, eventHorizon: &s.eventHorizon, auditHorizon: &s.auditHorizon})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.horizon, s.eventHorizon, s.auditHorizon = timeHorizon{}, timeHorizon{}, timeHorizon{}
		return false
	}
	s.applied.Store(indexes[len(indexes)-1])
	for i := range outs {
		s.bumpAuth(&cmds[i])
		values[i], errs[i] = outs[i].result()
		if errs[i] == nil {
			s.publish(cmds[i].Type, values[i], indexes[i], outs[i].changed)
		}
		if outs[i].events > 0 {
			s.eventsWritten()
		}
	}
	return true
}

// bumpAuth advances AuthGeneration after a command that may have ended a
// session or changed an account or an operator token (even a refused
// one: a reused refresh token ends its session as it is refused).
func (s *Store) bumpAuth(cmd *Command) {
	switch cmd.Type {
	case CmdUpdateUser, CmdDeleteUser, CmdDeleteSession, CmdPruneSessions, CmdRotateSession, CmdRevokeToken:
		s.authGen.Add(1)
	}
}

// AuthGeneration grows whenever a session, an account or an operator
// token may have been revoked or changed (and when the state is replaced
// from a snapshot). A credential checked at one generation is still valid
// while the generation has not moved.
func (s *Store) AuthGeneration() uint64 { return s.authGen.Load() }

// publish tells the change feed what an applied command changed; v is the
// command's result.
func (s *Store) publish(typ string, v any, index uint64, changed []string) {
	if c, ok := changeOf(typ, v, index); ok {
		s.feed.publish(c)
	}
	for _, id := range changed {
		s.feed.publish(Change{Index: index, Kind: ChangeTenant, ID: id})
	}
}

// replayed answers an entry at or below the applied index: it was applied
// before, so nothing changes.
func (s *Store) replayed(data []byte) (any, error) {
	cmd, err := DecodeCommand(data)
	if err != nil || cmd.RequestID == "" {
		return nil, nil
	}
	var out outcome
	var found bool
	err = s.db.View(func(txn *badger.Txn) error {
		var err error
		found, err = getJSON(txn, requestKey(cmd.RequestID), &out)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read request %q: %w", cmd.RequestID, err)
	}
	if !found || out.Type != cmd.Type {
		return nil, nil
	}
	return out.result()
}

// applyTxn applies a decoded command in its transaction and returns its
// outcome; the error is fatal.
func applyTxn(a *applyCtx) (outcome, error) {
	rid := a.cmd.RequestID
	out, seen, err := recordedOutcome(a)
	if err != nil {
		return out, err
	}
	if seen {
		return out, finishTxn(a)
	}
	out = outcome{Type: a.cmd.Type, Time: a.now}
	value, cerr, err := runHandler(a)
	switch {
	case err != nil:
		return out, err
	case cerr != nil:
		out.Err = cerr
	default:
		if out.Value, err = json.Marshal(value); err != nil {
			return out, fmt.Errorf("encode result: %w", err)
		}
		if err := writeAudit(a, a.cmd.Audit, envelopeAudit); err != nil {
			return out, err
		}
		if err := writeEvents(a); err != nil {
			return out, err
		}
		out.events = len(a.events)
	}
	out.changed = a.changed
	if rid != "" {
		if err := recordOutcome(a.txn, rid, out); err != nil {
			return out, err
		}
		a.horizon.recorded(out.Time)
	}
	return out, finishTxn(a)
}

// runHandler checks the envelope's own fields and runs the type's handler.
func runHandler(a *applyCtx) (any, *cluster.Error, error) {
	if len(a.cmd.RequestID) > MaxRequestIDLen {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "request id is %d bytes, at most %d allowed", len(a.cmd.RequestID), MaxRequestIDLen), nil
	}
	if a.cmd.Time.IsZero() {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "%s command has no time", a.cmd.Type), nil
	}
	return handlers[a.cmd.Type].apply(a)
}

// recordedOutcome returns the outcome recorded for the command's request id,
// and whether there is one. A request id reused by another command type is
// the new command's error, not the old one's result.
func recordedOutcome(a *applyCtx) (outcome, bool, error) {
	var out outcome
	rid := a.cmd.RequestID
	if rid == "" || len(rid) > MaxRequestIDLen {
		return out, false, nil
	}
	found, err := getJSON(a.txn, requestKey(rid), &out)
	if err != nil || !found {
		return out, false, err
	}
	if out.Type != a.cmd.Type {
		cerr := cluster.Errorf(cluster.ErrInvalidInput, "request id %q was already used for a %s command", rid, out.Type)
		return outcome{Type: a.cmd.Type, Time: a.now, Err: cerr}, true, nil
	}
	return out, true, nil
}

// finishTxn prunes expired request records and records the applied index:
// the last writes of every applied entry.
func finishTxn(a *applyCtx) error {
	if err := pruneRequests(a.txn, a.now, a.horizon); err != nil {
		return fmt.Errorf("prune request records: %w", err)
	}
	return writeApplied(a.txn, a.index)
}

// recordOutcome stores out under rid and in the time-ordered index.
func recordOutcome(txn *badger.Txn, rid string, out outcome) error {
	b, err := out.encode()
	if err != nil {
		return fmt.Errorf("encode the outcome of request %s: %w", rid, err)
	}
	if err := txn.Set(requestKey(rid), b); err != nil {
		return err
	}
	return txn.Set(requestTimeKey(out.Time, rid), nil)
}

// encode is the outcome's JSON, as json.Marshal writes it, without
// json.Marshal's check and compaction of Value: Value is json.Marshal's
// own output already, and re-scanning it was an eighth of the cost of
// applying a tenant create.
func (o outcome) encode() ([]byte, error) {
	typ, err := json.Marshal(o.Type)
	if err != nil {
		return nil, err
	}
	at, err := o.Time.MarshalJSON()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 48+len(typ)+len(at)+len(o.Value))
	b = append(append(append(b, `{"type":`...), typ...), `,"time":`...)
	b = append(b, at...)
	if len(o.Value) > 0 {
		b = append(append(b, `,"value":`...), o.Value...)
	}
	if o.Err != nil {
		e, err := json.Marshal(o.Err)
		if err != nil {
			return nil, err
		}
		b = append(append(b, `,"err":`...), e...)
	}
	return append(b, '}'), nil
}

// pruneRequests deletes up to pruneBatch request records whose time is more
// than RequestTTL before now. Keys sort by time, so it reads only expired
// entries and one more.
func pruneRequests(txn *badger.Txn, now time.Time, h *timeHorizon) error {
	if now.IsZero() {
		return nil
	}
	cutoff := now.Add(-RequestTTL)
	if h.none(cutoff) {
		return nil
	}
	var expired [][]byte
	next := timeHorizon{known: true, empty: true}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRequestTime})
	for it.Rewind(); it.Valid(); it.Next() {
		key := it.Item().KeyCopy(nil)
		t, _ := parseRequestTimeKey(key)
		if !t.Before(cutoff) {
			next = timeHorizon{known: true, oldest: t}
			break
		}
		if len(expired) == pruneBatch {
			next = timeHorizon{} // more left than one apply prunes
			break
		}
		expired = append(expired, key)
	}
	it.Close()
	for _, key := range expired {
		_, rid := parseRequestTimeKey(key)
		if err := txn.Delete(key); err != nil {
			return err
		}
		if err := txn.Delete(requestKey(rid)); err != nil {
			return err
		}
	}
	*h = next
	return nil
}

// requestTimeKey orders records by time: prefix, seconds since the Unix
// epoch (sign bit flipped so negatives sort first), nanoseconds, request id.
func requestTimeKey(t time.Time, rid string) []byte {
	k := append([]byte(nil), prefixRequestTime...)
	k = binary.BigEndian.AppendUint64(k, uint64(t.Unix())^(1<<63))
	k = binary.BigEndian.AppendUint32(k, uint32(t.Nanosecond()))
	return append(k, rid...)
}

func parseRequestTimeKey(k []byte) (time.Time, string) {
	k = k[len(prefixRequestTime):]
	if len(k) < 12 {
		return time.Time{}, ""
	}
	sec := int64(binary.BigEndian.Uint64(k[:8]) ^ (1 << 63))
	nsec := int64(binary.BigEndian.Uint32(k[8:12]))
	return time.Unix(sec, nsec).UTC(), string(k[12:])
}
