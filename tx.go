package federation

import (
	"context"
	"slices"

	"github.com/devicemesh/federation/internal/engine"
)

// Tx is a transaction in progress, handed to the function given to
// Node.Update. It is valid only during that call and not safe for
// concurrent use.
type Tx struct {
	ctx  context.Context
	node *Node
	buf  engine.TxBuf
}

// Put writes value under (collection, key) when the transaction commits. The
// value is copied. Keys and values must follow the rules of the package
// documentation ("Keys and values"); a value that the collection's
// resolver cannot decode (conflict.Validator: profile, conversation,
// personality, embeddings, analytics) is refused with ErrInvalidArgument.
func (tx *Tx) Put(collection, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	if err := tx.node.checkWrite(collection, key, value); err != nil {
		return err
	}
	return tx.buf.Set(collection, key, slices.Clone(value), false)
}

// Delete writes a tombstone for (collection, key) when the transaction
// commits. In a collection whose resolver removes what it holds
// (conflict.Remover: union, chronological log, profile, embeddings) the deletion of
// a live record is written as its value with everything it holds removed
// instead, so that it removes exactly what this device has seen (see the
// conflict package, Deletions in join collections).
func (tx *Tx) Delete(collection, key string) error {
	if err := tx.node.checkCollection(collection); err != nil {
		return err
	}
	return tx.buf.Set(collection, key, nil, true)
}

// Get returns the value of (collection, key) as this transaction sees it: its
// own pending write if any, else the committed value. Absent or deleted keys
// give an error wrapping ErrNotFound.
func (tx *Tx) Get(collection, key string) ([]byte, error) {
	if v, ok, err := tx.buf.Pending(collection, key); ok {
		return v, err
	}
	return tx.node.Get(tx.ctx, collection, key)
}

// Context returns the context of the Update call that runs this
// transaction, marked as this transaction's: a Node write made with it (or
// a context derived from it) while the transaction's function runs fails
// with ErrReentrantWrite instead of deadlocking.
func (tx *Tx) Context() context.Context { return tx.ctx }

// Len returns the number of distinct keys written so far.
func (tx *Tx) Len() int { return tx.buf.Len() }
