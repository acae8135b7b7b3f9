package store

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/pbe/pbe/cluster"
)

// Command types. Each has a payload struct of the same name (CmdCreateTenant
// takes a CreateTenant) and is at CommandVersion.
const (
	CmdCreateTenant  = "create_tenant"
	CmdDeleteTenant  = "delete_tenant"
	CmdRestoreTenant = "restore_tenant"
	CmdPurgeTenant   = "purge_tenant"
	CmdUpdateTenant  = "update_tenant"
	CmdCreateToken   = "create_token"
	CmdRevokeToken   = "revoke_token"
	CmdSetMember     = "set_member"
	CmdRemoveMember  = "remove_member"
	CmdRegisterNode  = "register_node"
	CmdSetNodeState  = "set_node_state"
	CmdSetDomains    = "set_domains"

	CmdCreateUser         = "create_user"
	CmdUpdateUser         = "update_user"
	CmdDeleteUser         = "delete_user"
	CmdCreateSession      = "create_session"
	CmdRotateSession      = "rotate_session"
	CmdDeleteSession      = "delete_session"
	CmdPruneSessions      = "prune_sessions"
	CmdCreateTicket       = "create_ticket"
	CmdRedeemTicket       = "redeem_ticket"
	CmdCreateQuotaRequest = "create_quota_request"
	CmdDecideQuotaRequest = "decide_quota_request"
	CmdAppendAudit        = "append_audit"
	CmdAddSigningKey      = "add_signing_key"
	CmdCreateWebhook      = "create_webhook"
	CmdDeleteWebhook      = "delete_webhook"
	CmdAdvanceWebhook     = "advance_webhook"
	CmdRecordEvents       = "record_events"
)

// CommandVersion is the version this code writes and the only one it
// applies. A change to a payload's meaning gets a new version, and Apply
// keeps the old one's handler for as long as old entries may be replayed.
const CommandVersion = 1

// MaxRequestIDLen bounds a command's request id.
const MaxRequestIDLen = 128

// ErrUnknownCommand is wrapped by Apply's error for a command it cannot
// decode or whose type or version it does not know. Such an entry must not
// be skipped: the node stops (see IsFatal).
var ErrUnknownCommand = errors.New("unknown or undecodable command")

// Command is the envelope of every entry in the Raft log.
type Command struct {
	Type    string `json:"type"`
	Version int    `json:"v"`
	// RequestID makes the command idempotent: a second command with the same
	// id returns the first one's recorded result and changes nothing.
	RequestID string `json:"rid,omitempty"`
	// Time is the proposer's clock when the command was made; it is the only
	// time Apply uses.
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
	// Audit entries are recorded with the command when it succeeds, in the
	// same transaction (Apply sets their ids and times).
	Audit []cluster.AuditEntry `json:"audit,omitempty"`
}

// CreateTenant is the payload of CmdCreateTenant. The tenant's state, times
// and version are set by Apply; ID, Name, Durability ("" = async), Node,
// Epoch and RestoreEpoch are taken from it.
type CreateTenant struct {
	Tenant cluster.Tenant `json:"tenant"`
	// When Tenant.Owner is set, the owner must exist and own fewer than
	// their MaxTenants live tenants; the tenant takes the owner's
	// per-tenant quota and suspension.
}

// DeleteTenant is the payload of CmdDeleteTenant.
type DeleteTenant struct {
	ID string `json:"id"`
	// PurgeAfter is when the tenant's data may be purged; must be set.
	PurgeAfter time.Time `json:"purge_after"`
}

// RestoreTenant is the payload of CmdRestoreTenant.
type RestoreTenant struct {
	ID string `json:"id"`
}

// PurgeTenant is the payload of CmdPurgeTenant.
type PurgeTenant struct {
	ID string `json:"id"`
}

// UpdateTenant is the payload of CmdUpdateTenant. Nil fields are left as they
// are; at least one must be set.
type UpdateTenant struct {
	ID string `json:"id"`
	// ExpectedVersion, if not zero, must equal the tenant's Version.
	ExpectedVersion uint64               `json:"expected_version,omitempty"`
	Name            *string              `json:"name,omitempty"`
	Node            *string              `json:"node,omitempty"`
	Epoch           *uint64              `json:"epoch,omitempty"`
	RestoreEpoch    *uint64              `json:"restore_epoch,omitempty"`
	Durability      *cluster.Durability  `json:"durability,omitempty"`
	Suspended       *bool                `json:"suspended,omitempty"`
	Quota           *cluster.TenantQuota `json:"quota,omitempty"`
	// Restore goes with a new Epoch: what the tenant restarts from (see
	// cluster.RestoreSpec); it replaces the tenant's earlier one.
	Restore *cluster.RestoreSpec `json:"restore,omitempty"`
	// Archive marks the tenant archived (with a new Epoch, no Node and a
	// Restore of its archive). Assigning it a node clears the mark.
	Archive bool `json:"archive,omitempty"`
	// Backups replaces the backup schedule; a zero EverySeconds removes it.
	Backups *cluster.BackupPolicy `json:"backups,omitempty"`
}

// CreateToken is the payload of CmdCreateToken. Its JSON form carries the
// token's Hash (which cluster.Token's own JSON omits). CreatedAt is set by
// Apply.
type CreateToken struct {
	Token cluster.Token
}

// MarshalJSON encodes the token with its hash.
func (p CreateToken) MarshalJSON() ([]byte, error) {
	return json.Marshal(createTokenJSON{Token: newStoredToken(p.Token)})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (p *CreateToken) UnmarshalJSON(b []byte) error {
	var v createTokenJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	p.Token = v.Token.token()
	return nil
}

type createTokenJSON struct {
	Token storedToken `json:"token"`
}

// RevokeToken is the payload of CmdRevokeToken.
type RevokeToken struct {
	ID string `json:"id"`
}

// SetMember is the payload of CmdSetMember: it records (or replaces) a
// control-plane member's addresses.
type SetMember struct {
	Member cluster.Member `json:"member"`
}

// RemoveMember is the payload of CmdRemoveMember.
type RemoveMember struct {
	ID string `json:"id"`
}

// RegisterNode is the payload of CmdRegisterNode: ID, Addr and Capacity
// are taken from Node; state, times and version are set by Apply.
type RegisterNode struct {
	Node cluster.Node `json:"node"`
}

// SetNodeState is the payload of CmdSetNodeState.
type SetNodeState struct {
	ID    string            `json:"id"`
	State cluster.NodeState `json:"state"`
	// ExpectedVersion, if not zero, must equal the node's Version.
	ExpectedVersion uint64 `json:"expected_version,omitempty"`
}

// SetDomains is the payload of CmdSetDomains: the tenant's full list of
// custom domains.
type SetDomains struct {
	ID      string   `json:"id"`
	Domains []string `json:"domains"`
}

// storedToken is a token as persisted: unlike cluster.Token, its JSON form
// keeps the hash.
type storedToken struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
}

func newStoredToken(t cluster.Token) storedToken {
	return storedToken{ID: t.ID, Name: t.Name, Hash: t.Hash, CreatedAt: t.CreatedAt}
}

func (s storedToken) token() cluster.Token {
	return cluster.Token{ID: s.ID, Name: s.Name, Hash: s.Hash, CreatedAt: s.CreatedAt}
}

// payloadTypes maps each command type to its payload type.
var payloadTypes = map[string]reflect.Type{
	CmdCreateTenant:  reflect.TypeFor[CreateTenant](),
	CmdDeleteTenant:  reflect.TypeFor[DeleteTenant](),
	CmdRestoreTenant: reflect.TypeFor[RestoreTenant](),
	CmdPurgeTenant:   reflect.TypeFor[PurgeTenant](),
	CmdUpdateTenant:  reflect.TypeFor[UpdateTenant](),
	CmdCreateToken:   reflect.TypeFor[CreateToken](),
	CmdRevokeToken:   reflect.TypeFor[RevokeToken](),
	CmdSetMember:     reflect.TypeFor[SetMember](),
	CmdRemoveMember:  reflect.TypeFor[RemoveMember](),
	CmdRegisterNode:  reflect.TypeFor[RegisterNode](),
	CmdSetNodeState:  reflect.TypeFor[SetNodeState](),
	CmdSetDomains:    reflect.TypeFor[SetDomains](),

	CmdCreateUser:         reflect.TypeFor[CreateUser](),
	CmdUpdateUser:         reflect.TypeFor[UpdateUser](),
	CmdDeleteUser:         reflect.TypeFor[DeleteUser](),
	CmdCreateSession:      reflect.TypeFor[CreateSession](),
	CmdRotateSession:      reflect.TypeFor[RotateSession](),
	CmdDeleteSession:      reflect.TypeFor[DeleteSession](),
	CmdPruneSessions:      reflect.TypeFor[PruneSessions](),
	CmdCreateTicket:       reflect.TypeFor[CreateTicket](),
	CmdRedeemTicket:       reflect.TypeFor[RedeemTicket](),
	CmdCreateQuotaRequest: reflect.TypeFor[CreateQuotaRequest](),
	CmdDecideQuotaRequest: reflect.TypeFor[DecideQuotaRequest](),
	CmdAppendAudit:        reflect.TypeFor[AppendAudit](),
	CmdAddSigningKey:      reflect.TypeFor[AddSigningKey](),
	CmdCreateWebhook:      reflect.TypeFor[CreateWebhook](),
	CmdDeleteWebhook:      reflect.TypeFor[DeleteWebhook](),
	CmdAdvanceWebhook:     reflect.TypeFor[AdvanceWebhook](),
	CmdRecordEvents:       reflect.TypeFor[RecordEvents](),
}

// EncodeCommand returns the log entry for a command of type typ. payload must
// be typ's payload struct (or a pointer to it). It fails, with
// cluster.ErrInvalidInput, for an unknown type, a mismatched payload or a
// request id longer than MaxRequestIDLen. A value that encodes but cannot
// be decoded again (a time past year 9999) is refused by CheckCommand,
// which Raft's Apply runs before proposing.
func EncodeCommand(typ, requestID string, now time.Time, payload any) ([]byte, error) {
	return EncodeAuditedCommand(typ, requestID, now, payload, nil)
}

// EncodeAuditedCommand is EncodeCommand for a command that, when it
// succeeds, also records audit entries.
func EncodeAuditedCommand(typ, requestID string, now time.Time, payload any, audit []cluster.AuditEntry) ([]byte, error) {
	want, ok := payloadTypes[typ]
	if !ok {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "unknown command type %q", typ)
	}
	got := reflect.TypeOf(payload)
	if got != want && got != reflect.PointerTo(want) {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "payload of %s must be store.%s, got %v", typ, want.Name(), got)
	}
	if len(requestID) > MaxRequestIDLen {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "request id is %d bytes, at most %d allowed", len(requestID), MaxRequestIDLen)
	}
	data, err := json.Marshal(payload)
	if err != nil {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "encode %s payload: %v", typ, err)
	}
	cmd := Command{Type: typ, Version: CommandVersion, RequestID: requestID, Time: now, Data: data, Audit: audit}
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "encode %s command: %v", typ, err)
	}
	return b, nil
}

// NewCommand is EncodeCommand for payloads built by the caller's own code.
// It panics where EncodeCommand returns an error: a mismatched payload is a
// programming error. Use EncodeCommand when a payload holds unchecked input
// (a time from a request).
func NewCommand(typ, requestID string, now time.Time, payload any) []byte {
	b, err := EncodeCommand(typ, requestID, now, payload)
	if err != nil {
		panic("store.NewCommand: " + err.Error())
	}
	return b
}

// DecodeCommand decodes a log entry's envelope and checks that its type and
// version are known. Its error wraps ErrUnknownCommand.
func DecodeCommand(data []byte) (Command, error) {
	var cmd Command
	if err := json.Unmarshal(data, &cmd); err != nil {
		return cmd, fmt.Errorf("%w: %v", ErrUnknownCommand, err)
	}
	if _, ok := payloadTypes[cmd.Type]; !ok {
		return cmd, fmt.Errorf("%w: type %q", ErrUnknownCommand, cmd.Type)
	}
	if cmd.Version != CommandVersion {
		return cmd, fmt.Errorf("%w: %s version %d (this build applies version %d)", ErrUnknownCommand, cmd.Type, cmd.Version, CommandVersion)
	}
	return cmd, nil
}

// CheckCommand reports whether data is a command this build can apply, with
// a payload that decodes strictly (no unknown fields). Call it before
// proposing: an entry Apply cannot decode stops every node that applies it.
// Its error is a *cluster.Error with code cluster.ErrInvalidInput.
func (s *Store) CheckCommand(data []byte) error {
	cmd, err := DecodeCommand(data)
	if err != nil {
		return cluster.Errorf(cluster.ErrInvalidInput, "%v", err)
	}
	payload := reflect.New(payloadTypes[cmd.Type]).Interface()
	rest, err := json.Parse(cmd.Data, payload, json.DisallowUnknownFields)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected %q after the payload", rest[:min(len(rest), 16)])
	}
	if err != nil {
		return cluster.Errorf(cluster.ErrInvalidInput, "%s payload: %v", cmd.Type, err)
	}
	return nil
}

// IsFatal reports whether err, returned by Apply, means the entry could not
// be applied (an unknown or undecodable command, a storage failure) as
// opposed to being the command's own outcome (a *cluster.Error). A fatal
// error must stop the node: skipping the entry would let this node's state
// diverge from its peers'.
func (s *Store) IsFatal(err error) bool {
	if err == nil {
		return false
	}
	_, isCommandError := cluster.AsError(err)
	return !isCommandError || errors.Is(err, ErrUnknownCommand)
}

// decodePayload decodes the command's payload; its error wraps
// ErrUnknownCommand.
func decodePayload[T any](cmd *Command) (T, error) {
	var p T
	if err := json.Unmarshal(cmd.Data, &p); err != nil {
		return p, fmt.Errorf("%w: %s payload: %v", ErrUnknownCommand, cmd.Type, err)
	}
	return p, nil
}
