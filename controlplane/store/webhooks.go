package store

import (
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/pbe/pbe/cluster"
)

var prefixWebhook = []byte("w/")

func webhookKey(id string) []byte { return append(slices.Clip(prefixWebhook), id...) }

// StoredWebhook is a webhook with its signing secret.
type StoredWebhook struct {
	cluster.Webhook
	Secret string `json:"secret"`
}

// Webhook command payloads.
type (
	// CreateWebhook adds a webhook; its Cursor is where delivery starts.
	CreateWebhook struct {
		Webhook StoredWebhook `json:"webhook"`
	}
	// DeleteWebhook removes a webhook.
	DeleteWebhook struct {
		ID string `json:"id"`
	}
	// AdvanceWebhook records that events up to Cursor were delivered. A
	// cursor never moves back.
	AdvanceWebhook struct {
		ID     string `json:"id"`
		Cursor string `json:"cursor"`
	}
)

func applyCreateWebhook(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[CreateWebhook](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	w := p.Webhook
	if w.ID == "" || w.URL == "" || len(w.Secret) < 16 {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "webhook: id, url and a secret of at least 16 bytes are required"), nil
	}
	var old StoredWebhook
	if found, err := getJSON(a.txn, webhookKey(w.ID), &old); err != nil || found {
		if found {
			return nil, cluster.Errorf(cluster.ErrInvalidInput, "webhook %q exists", w.ID), nil
		}
		return nil, nil, err
	}
	w.CreatedAt = a.now
	return w.Webhook, nil, setJSON(a.txn, webhookKey(w.ID), w)
}

func applyDeleteWebhook(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[DeleteWebhook](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	var w StoredWebhook
	found, err := getJSON(a.txn, webhookKey(p.ID), &w)
	if err != nil || !found {
		if !found && err == nil {
			return nil, cluster.Errorf(cluster.ErrNotFound, "webhook %q not found", p.ID), nil
		}
		return nil, nil, err
	}
	return w.Webhook, nil, a.txn.Delete(webhookKey(p.ID))
}

func applyAdvanceWebhook(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[AdvanceWebhook](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	var w StoredWebhook
	found, err := getJSON(a.txn, webhookKey(p.ID), &w)
	if err != nil || !found {
		if !found && err == nil {
			return nil, cluster.Errorf(cluster.ErrNotFound, "webhook %q not found", p.ID), nil
		}
		return nil, nil, err
	}
	if p.Cursor <= w.Cursor {
		return w.Webhook, nil, nil
	}
	w.Cursor = p.Cursor
	return w.Webhook, nil, setJSON(a.txn, webhookKey(w.ID), w)
}

// Webhooks returns every webhook with its secret, by id.
func (s *Store) Webhooks() ([]StoredWebhook, error) {
	out := []StoredWebhook{}
	err := s.view(func(txn *badger.Txn) error {
		return scanJSON(txn, prefixWebhook, func(w *StoredWebhook) { out = append(out, *w) })
	})
	return out, err
}
