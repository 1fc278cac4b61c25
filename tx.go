package federation

import (
	"context"
	"fmt"
	"slices"

	"github.com/devicemesh/federation/core"
)

// Tx is a transaction in progress, handed to the function given to
// Node.Update. It is valid only during that call and not safe for
// concurrent use.
type Tx struct {
	ctx   context.Context
	node  *Node
	ops   []txOp
	index map[txKey]int // position of a key's op in ops
	done  bool
}

type txKey struct{ collection, key string }

type txOp struct {
	collection, key string
	value           []byte
	deleted         bool
}

// Put writes value under (collection, key) when the transaction commits. The
// value is copied.
func (tx *Tx) Put(collection, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return tx.set(collection, key, slices.Clone(value), false)
}

// Delete writes a tombstone for (collection, key) when the transaction
// commits. In a collection whose resolver removes what it holds
// (conflict.Remover: union, chronological log, profile, embeddings) the deletion of
// a live record is written as its value with everything it holds removed
// instead, so that it removes exactly what this device has seen (see the
// conflict package, Deletions in join collections).
func (tx *Tx) Delete(collection, key string) error {
	return tx.set(collection, key, nil, true)
}

func (tx *Tx) set(collection, key string, value []byte, deleted bool) error {
	if tx.done {
		return core.ErrTxnDone
	}
	if err := core.ValidateKey(collection, key, len(value)); err != nil {
		return err
	}
	if internal(collection) {
		return fmt.Errorf("%w: collection names starting with %q are reserved", core.ErrInvalidArgument, internalPrefix)
	}
	op := txOp{collection: collection, key: key, value: value, deleted: deleted}
	k := txKey{collection, key}
	// A key written twice in one transaction keeps only its last value: the
	// transaction is one atomic step, so intermediate values never exist.
	if i, ok := tx.index[k]; ok {
		tx.ops[i] = op
		return nil
	}
	tx.index[k] = len(tx.ops)
	tx.ops = append(tx.ops, op)
	return nil
}

// Get returns the value of (collection, key) as this transaction sees it: its
// own pending write if any, else the committed value. Absent or deleted keys
// give an error wrapping ErrNotFound.
func (tx *Tx) Get(collection, key string) ([]byte, error) {
	if tx.done {
		return nil, core.ErrTxnDone
	}
	if i, ok := tx.index[txKey{collection, key}]; ok {
		op := tx.ops[i]
		if op.deleted {
			return nil, fmt.Errorf("get %s/%q: %w", collection, key, core.ErrNotFound)
		}
		return slices.Clone(op.value), nil
	}
	return tx.node.Get(tx.ctx, collection, key)
}

// Context returns the context of the Update call that runs this
// transaction, marked as this transaction's: a Node write made with it (or
// a context derived from it) while the transaction's function runs fails
// with ErrReentrantWrite instead of deadlocking.
func (tx *Tx) Context() context.Context { return tx.ctx }

// Len returns the number of distinct keys written so far.
func (tx *Tx) Len() int { return len(tx.ops) }
