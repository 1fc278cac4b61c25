package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/crdt"
)

// The typed helpers below read and write the standard collections in the
// encodings their resolvers merge (see DefaultPolicies), so that a host
// needs neither the conflict nor the crdt encoders for everyday work. Each
// write is one transaction that reads the current value, changes it and
// writes it back, so concurrent helpers on one device never lose each
// other's changes, and concurrent writes on different devices merge.

// Profile is one document of the user-profile collection (CollectionProfile),
// a set of named fields merged field by field: the latest write of each
// field wins on every device (conflict.FieldMerge). Field values are any
// JSON-encodable value.
type Profile struct {
	n   *Node
	key string
}

// Profile returns the profile document stored under key (hosts usually
// keep one, such as "me").
func (n *Node) Profile(key string) Profile { return Profile{n: n, key: key} }

// Set writes one field. value is encoded as JSON.
func (p Profile) Set(ctx context.Context, field string, value any) error {
	return p.write(ctx, func(old []byte) ([]byte, error) {
		ts, err := p.n.Now()
		if err != nil {
			return nil, err
		}
		return conflict.ProfileSet(old, field, value, ts, p.n.DeviceID())
	})
}

// Delete removes one field (a deletion that a later write of the field on
// another device overrides, like any write).
func (p Profile) Delete(ctx context.Context, field string) error {
	return p.write(ctx, func(old []byte) ([]byte, error) {
		ts, err := p.n.Now()
		if err != nil {
			return nil, err
		}
		return conflict.ProfileDelete(old, field, ts, p.n.DeviceID())
	})
}

// Get decodes field into out (a pointer, as for json.Unmarshal) and
// reports whether the field is set.
func (p Profile) Get(ctx context.Context, field string, out any) (bool, error) {
	v, err := p.n.Get(ctx, CollectionProfile, p.key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	raw, ok, err := conflict.ProfileGet(v, field)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return true, fmt.Errorf("profile %q field %q: %w", p.key, field, err)
	}
	return true, nil
}

// Fields returns every set field as JSON (empty for a missing document).
func (p Profile) Fields(ctx context.Context) (map[string]json.RawMessage, error) {
	v, err := p.n.Get(ctx, CollectionProfile, p.key)
	if errors.Is(err, ErrNotFound) {
		return map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, err
	}
	return conflict.ProfileFields(v)
}

func (p Profile) write(ctx context.Context, change func(old []byte) ([]byte, error)) error {
	return update(ctx, p.n, CollectionProfile, p.key, change)
}

// Conversation is one conversation of the conversation-history collection
// (CollectionConversation): a log of messages that every device merges in
// chronological order (conflict.Chronological). Each message has an id
// unique within the conversation.
type Conversation struct {
	n   *Node
	key string
}

// Conversation returns the conversation stored under key.
func (n *Node) Conversation(key string) Conversation { return Conversation{n: n, key: key} }

// Append adds a message with the given id and body, stamped with this
// device and the current time. Appending an id the conversation holds
// already is ErrInvalidArgument.
func (c Conversation) Append(ctx context.Context, id string, body []byte) error {
	return c.edit(ctx, func(l *crdt.Log, ts Timestamp) error {
		if _, ok := l.Get(id); ok {
			return fmt.Errorf("%w: conversation %q already holds message %q", ErrInvalidArgument, c.key, id)
		}
		return l.Append(crdt.Message{ID: id, Time: ts, Device: c.n.DeviceID(), Body: body})
	})
}

// Edit replaces the body of message id (concurrent edits: the latest
// wins).
func (c Conversation) Edit(ctx context.Context, id string, body []byte) error {
	return c.edit(ctx, func(l *crdt.Log, ts Timestamp) error { return l.Edit(id, body, ts, c.n.DeviceID()) })
}

// Remove deletes message id (an edit: it stays in the log, Deleted, with
// an empty body).
func (c Conversation) Remove(ctx context.Context, id string) error {
	return c.edit(ctx, func(l *crdt.Log, ts Timestamp) error { return l.Delete(id, ts, c.n.DeviceID()) })
}

// Messages returns the conversation's messages in order (empty for a
// missing conversation), deleted ones included and marked.
func (c Conversation) Messages(ctx context.Context) ([]crdt.Message, error) {
	v, err := c.n.Get(ctx, CollectionConversation, c.key)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	l, err := crdt.DecodeLog(v)
	if err != nil {
		return nil, fmt.Errorf("conversation %q: %w", c.key, err)
	}
	return l.Messages(), nil
}

func (c Conversation) edit(ctx context.Context, change func(l *crdt.Log, ts Timestamp) error) error {
	return update(ctx, c.n, CollectionConversation, c.key, func(old []byte) ([]byte, error) {
		l, err := crdt.DecodeLog(old)
		if err != nil {
			return nil, err
		}
		ts, err := c.n.Now()
		if err != nil {
			return nil, err
		}
		if err := change(l, ts); err != nil {
			return nil, err
		}
		return l.Encode(), nil
	})
}

// Personality is one trait vector of the personality-model collection
// (CollectionPersonality): each device contributes weighted samples and the
// model is the weighted mean of every device's contribution
// (conflict.WeightedAverage).
type Personality struct {
	n   *Node
	key string
}

// Personality returns the trait vector stored under key.
func (n *Node) Personality(key string) Personality { return Personality{n: n, key: key} }

// Contribute folds sample, with the given weight, into this device's
// contribution. Every sample of one key must have the same length.
func (p Personality) Contribute(ctx context.Context, sample []float64, weight float64) error {
	return update(ctx, p.n, CollectionPersonality, p.key, func(old []byte) ([]byte, error) {
		avg, err := crdt.DecodeAverage(old)
		if err != nil {
			return nil, err
		}
		if err := avg.Add(p.n.DeviceID(), sample, weight); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
		return avg.Encode(), nil
	})
}

// Value returns the model's weighted mean and total weight (nil and 0 for
// a missing key).
func (p Personality) Value(ctx context.Context) ([]float64, float64, error) {
	v, err := p.n.Get(ctx, CollectionPersonality, p.key)
	if errors.Is(err, ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	avg, err := crdt.DecodeAverage(v)
	if err != nil {
		return nil, 0, fmt.Errorf("personality %q: %w", p.key, err)
	}
	mean, weight := avg.Value()
	return mean, weight, nil
}

// Embedding is one vector of the embeddings collection
// (CollectionEmbeddings): concurrent writes of the same content keep one
// vector; of different contents, the latest wins and is marked stale for
// re-embedding (conflict.VectorMerge, Config.Reembed).
type Embedding struct {
	n   *Node
	key string
}

// Embedding returns the embedding stored under key.
func (n *Node) Embedding(key string) Embedding { return Embedding{n: n, key: key} }

// Set stores e (its Vector, ContentHash, Model and Meta; the engine keeps
// the rest).
func (e Embedding) Set(ctx context.Context, v conflict.Embedding) error {
	b, err := v.Encode()
	if err != nil {
		return fmt.Errorf("embedding %q: %w: %w", e.key, ErrInvalidArgument, err)
	}
	return e.n.Put(ctx, CollectionEmbeddings, e.key, b)
}

// Get returns the stored embedding, or an error wrapping ErrNotFound.
func (e Embedding) Get(ctx context.Context) (conflict.Embedding, error) {
	b, err := e.n.Get(ctx, CollectionEmbeddings, e.key)
	if err != nil {
		return conflict.Embedding{}, err
	}
	v, err := conflict.DecodeEmbedding(b)
	if err != nil {
		return conflict.Embedding{}, fmt.Errorf("embedding %q: %w", e.key, err)
	}
	if v.Removed {
		return conflict.Embedding{}, fmt.Errorf("embedding %q: %w", e.key, ErrNotFound)
	}
	return v, nil
}

// Analytics is one append-only event set of the analytics collection
// (CollectionAnalytics): the union of every device's events
// (conflict.Union). Events are opaque and deduplicated by their bytes, so
// give each a unique id inside its bytes.
type Analytics struct {
	n   *Node
	key string
}

// Analytics returns the event set stored under key.
func (n *Node) Analytics(key string) Analytics { return Analytics{n: n, key: key} }

// Record adds events.
func (a Analytics) Record(ctx context.Context, events ...[]byte) error {
	return update(ctx, a.n, CollectionAnalytics, a.key, func(old []byte) ([]byte, error) {
		return conflict.EventsAppend(old, events...)
	})
}

// Events returns the events held, in ascending byte order (none for a
// missing key).
func (a Analytics) Events(ctx context.Context) ([][]byte, error) {
	v, err := a.n.Get(ctx, CollectionAnalytics, a.key)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return conflict.Events(v)
}

// update runs change on the current value of (collection, key) (nil when
// absent or deleted) and writes its result, in one transaction.
func update(ctx context.Context, n *Node, collection, key string, change func(old []byte) ([]byte, error)) error {
	return n.Update(ctx, func(tx *Tx) error {
		old, err := tx.Get(collection, key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		v, err := change(old)
		if err != nil {
			return fmt.Errorf("%s/%q: %w", collection, key, err)
		}
		return tx.Put(collection, key, v)
	})
}
