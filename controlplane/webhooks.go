package controlplane

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// Webhooks: operators register URLs that receive the platform's events
// (the same log GET /api/cp/events serves) as signed POSTs, in order, one
// at a time per webhook. The leader delivers; a failed delivery is retried
// with exponential backoff (WebhookRetryBase doubling up to
// WebhookRetryMax) and holds back the events after it. The last delivered
// event is recorded through Raft every few deliveries, so a new leader
// resumes there (an event may be delivered twice across a leader change;
// receivers deduplicate by X-Pbe-Event-Id). Each attempt is kept in a
// delivery log on the leader (GET /api/cp/webhooks/{id}/deliveries).
//
// A delivery is POST {event JSON} with headers:
//
//	X-Pbe-Event:     tenant.created
//	X-Pbe-Event-Id:  00000000000000000042-0000
//	X-Pbe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
const (
	WebhookRetryBase   = time.Second
	WebhookRetryMax    = 5 * time.Minute
	webhookTimeout     = 10 * time.Second
	webhookLogSize     = 100
	webhookCursorEvery = 2 * time.Second
	webhookIdleWait    = 5 * time.Second
)

type createWebhookRequest struct {
	URL    string   `json:"url"`
	Types  []string `json:"types"`
	Secret string   `json:"secret"`
}

func (c *ControlPlane) handleCreateWebhook(w http.ResponseWriter, r *http.Request) {
	var req createWebhookRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(req.URL) > 2000 {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "url" must be an http:// or https:// URL`))
		return
	}
	if len(req.Types) > 50 {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "types" lists more than 50 types`))
		return
	}
	for _, t := range req.Types {
		if t == "" || len(t) > 60 || strings.ContainsAny(t, " ,") {
			cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "types" holds event types such as "tenant.created" or "node.*"`))
			return
		}
	}
	if req.Secret == "" {
		req.Secret = "whsec_" + randomSecret()
	} else if len(req.Secret) < 16 || len(req.Secret) > 200 {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "secret" must be 16 to 200 bytes (or left out to have one made)`))
		return
	}
	cursor, err := c.store.LastEventID()
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	hook := store.StoredWebhook{Webhook: cluster.Webhook{ID: "wh" + randomHex(8), URL: req.URL, Types: req.Types, Cursor: cursor}, Secret: req.Secret}
	res, err := c.apply(r.Context(), store.CmdCreateWebhook, r.Header.Get(IdempotencyKeyHeader), store.CreateWebhook{Webhook: hook})
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	c.audit(r, "webhook_create", "", hook.ID, req.URL)
	c.hooks.poke()
	writeJSON(w, http.StatusCreated, map[string]any{"webhook": res, "secret": req.Secret})
}

func (c *ControlPlane) handleListWebhooks(w http.ResponseWriter, r *http.Request) {
	hooks, err := c.store.Webhooks()
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	items := make([]cluster.Webhook, 0, len(hooks))
	for _, h := range hooks {
		items = append(items, h.Webhook)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "total": len(items)})
}

func (c *ControlPlane) handleDeleteWebhook(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) > 64 {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrNotFound, "webhook not found"))
		return
	}
	if _, err := c.apply(r.Context(), store.CmdDeleteWebhook, r.Header.Get(IdempotencyKeyHeader), store.DeleteWebhook{ID: id}); err != nil {
		cluster.WriteError(w, err)
		return
	}
	c.audit(r, "webhook_delete", "", id, "")
	c.hooks.poke()
	w.WriteHeader(http.StatusNoContent)
}

// handleWebhookDeliveries shows the leader's log of a webhook's delivery
// attempts, newest last.
func (c *ControlPlane) handleWebhookDeliveries(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	found := false
	if hooks, err := c.store.Webhooks(); err == nil {
		for _, h := range hooks {
			found = found || h.ID == id
		}
	}
	if !found {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrNotFound, "webhook %q not found", clipPath(id)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": c.hooks.log(id)})
}

// Delivery is one attempt to deliver an event to a webhook.
type Delivery struct {
	Time     time.Time `json:"time"`
	EventID  string    `json:"event_id"`
	Event    string    `json:"event"`
	Attempt  int       `json:"attempt"`
	Status   int       `json:"status,omitempty"`
	Error    string    `json:"error,omitempty"`
	Duration float64   `json:"duration_ms"`
}

// webhooks delivers events on the leader.
type webhooks struct {
	c      *ControlPlane
	hc     *http.Client
	wake   chan struct{}
	mu     sync.Mutex
	logs   map[string][]Delivery
	cancel map[string]context.CancelFunc
}

func newWebhooks(c *ControlPlane) *webhooks {
	return &webhooks{c: c, hc: &http.Client{Timeout: webhookTimeout}, wake: make(chan struct{}, 1),
		logs: map[string][]Delivery{}, cancel: map[string]context.CancelFunc{}}
}

// poke makes the dispatcher look at the registered webhooks now.
func (h *webhooks) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *webhooks) log(id string) []Delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Delivery{}, h.logs[id]...)
}

func (h *webhooks) record(id string, d Delivery) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := append(h.logs[id], d)
	if len(l) > webhookLogSize {
		l = l[len(l)-webhookLogSize:]
	}
	h.logs[id] = l
}

// run keeps one delivery worker per webhook while this node leads.
func (h *webhooks) run(ctx context.Context) {
	t := time.NewTicker(webhookIdleWait)
	defer t.Stop()
	defer h.stopAll()
	for {
		if h.c.raft.IsLeader() {
			h.sync(ctx)
		} else {
			h.stopAll()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.wake:
		}
	}
}

// sync starts workers for new webhooks and stops those of deleted ones.
func (h *webhooks) sync(ctx context.Context) {
	hooks, err := h.c.store.Webhooks()
	if err != nil {
		h.c.logger.Warn("list webhooks", "error", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	live := map[string]bool{}
	for _, hook := range hooks {
		live[hook.ID] = true
		if _, ok := h.cancel[hook.ID]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		h.cancel[hook.ID] = cancel
		go h.deliver(wctx, hook)
	}
	for id, cancel := range h.cancel {
		if !live[id] {
			cancel()
			delete(h.cancel, id)
			delete(h.logs, id)
		}
	}
}

func (h *webhooks) stopAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, cancel := range h.cancel {
		cancel()
		delete(h.cancel, id)
	}
}

// deliver sends hook's events in order until ctx ends.
func (h *webhooks) deliver(ctx context.Context, hook store.StoredWebhook) {
	cursor, saved := hook.Cursor, hook.Cursor
	lastSave := time.Now()
	save := func() {
		if cursor == saved {
			return
		}
		if _, err := h.c.apply(ctx, store.CmdAdvanceWebhook, "", store.AdvanceWebhook{ID: hook.ID, Cursor: cursor}); err == nil {
			saved, lastSave = cursor, time.Now()
		}
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.c.cfg.ApplyTimeout)
		defer cancel()
		if cursor != saved {
			_, _ = h.c.apply(ctx, store.CmdAdvanceWebhook, "", store.AdvanceWebhook{ID: hook.ID, Cursor: cursor})
		}
	}()
	for ctx.Err() == nil {
		prev := cursor
		changed := h.c.store.EventsChanged()
		es, last, err := h.c.store.Events(store.EventFilter{After: cursor, Types: hook.Types, Limit: 100})
		if err != nil {
			h.c.logger.Warn("read events for webhook", "webhook", hook.ID, "error", err)
			return
		}
		for _, e := range es {
			if !h.exists(hook.ID) {
				return // deleted: nothing more is sent once the delete is applied
			}
			if !h.send(ctx, hook, e) {
				return
			}
			cursor = e.ID
			if time.Since(lastSave) > webhookCursorEvery {
				save()
			}
		}
		cursor = max(cursor, last)
		if cursor != prev {
			continue // there may be more
		}
		save()
		select {
		case <-ctx.Done():
		case <-changed:
		case <-time.After(webhookIdleWait):
		}
	}
}

// exists reports whether webhook id is still registered.
func (h *webhooks) exists(id string) bool {
	hooks, err := h.c.store.Webhooks()
	if err != nil {
		return true
	}
	for _, w := range hooks {
		if w.ID == id {
			return true
		}
	}
	return false
}

// send delivers e, retrying with backoff until it succeeds or ctx ends.
func (h *webhooks) send(ctx context.Context, hook store.StoredWebhook, e cluster.Event) bool {
	body, _ := json.Marshal(e)
	wait := WebhookRetryBase
	for attempt := 1; ; attempt++ {
		start := time.Now()
		status, err := h.post(ctx, hook, e, body)
		d := Delivery{Time: start.UTC(), EventID: e.ID, Event: e.Type, Attempt: attempt, Status: status,
			Duration: float64(time.Since(start).Microseconds()) / 1000}
		if err != nil {
			d.Error = err.Error()
		}
		h.record(hook.ID, d)
		if err == nil {
			return true
		}
		h.c.logger.Warn("webhook delivery failed; retrying", "webhook", hook.ID, "event", e.ID, "attempt", attempt, "retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		if !h.exists(hook.ID) {
			return false
		}
		wait = min(wait*2, WebhookRetryMax)
	}
}

// post makes one delivery; a 2xx answer is success.
func (h *webhooks) post(ctx context.Context, hook store.StoredWebhook, e cluster.Event, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pbe-webhooks/1")
	req.Header.Set("X-Pbe-Event", e.Type)
	req.Header.Set("X-Pbe-Event-Id", e.ID)
	req.Header.Set("X-Pbe-Signature", "t="+ts+",v1="+SignWebhook(hook.Secret, ts, body))
	resp, err := h.hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// SignWebhook is the v1 signature of a delivery: hex HMAC-SHA256 of
// "{timestamp}.{body}" keyed with the webhook's secret.
func SignWebhook(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}
