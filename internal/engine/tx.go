package engine

import (
	"fmt"
	"slices"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
)

// TxBuf holds the writes of a transaction in progress (federation.Tx):
// one op per key, in first-write order, until the transaction commits.
type TxBuf struct {
	ops   []replica.Op
	index map[txKey]int // position of a key's op in ops
	done  bool
}

type txKey struct{ collection, key string }

// Set records a write (a tombstone when deleted) of (collection, key). A
// key written twice keeps only its last value: the transaction is one
// atomic step, so intermediate values never exist.
func (b *TxBuf) Set(collection, key string, value []byte, deleted bool) error {
	if b.done {
		return core.ErrTxnDone
	}
	if err := core.ValidateHostKey(collection, key, len(value)); err != nil {
		return err
	}
	if replica.Internal(collection) {
		return fmt.Errorf("%w: collection names starting with %q are reserved", core.ErrInvalidArgument, replica.InternalPrefix)
	}
	op := replica.Op{Collection: collection, Key: key, Value: value, Deleted: deleted}
	k := txKey{collection, key}
	if i, ok := b.index[k]; ok {
		b.ops[i] = op
		return nil
	}
	if b.index == nil {
		b.index = map[txKey]int{}
	}
	b.index[k] = len(b.ops)
	b.ops = append(b.ops, op)
	return nil
}

// Pending returns the transaction's own write of (collection, key), if
// any: its value (a copy) or an error wrapping core.ErrNotFound for a
// tombstone.
func (b *TxBuf) Pending(collection, key string) (value []byte, ok bool, err error) {
	if b.done {
		return nil, true, core.ErrTxnDone
	}
	i, ok := b.index[txKey{collection, key}]
	if !ok {
		return nil, false, nil
	}
	if b.ops[i].Deleted {
		return nil, true, fmt.Errorf("get %s/%q: %w", collection, key, core.ErrNotFound)
	}
	return slices.Clone(b.ops[i].Value), true, nil
}

// Ops returns the writes to commit.
func (b *TxBuf) Ops() []replica.Op { return b.ops }

// Done ends the transaction: later writes and reads fail with
// core.ErrTxnDone.
func (b *TxBuf) Done() { b.done = true }

// Len returns the number of distinct keys written so far.
func (b *TxBuf) Len() int { return len(b.ops) }
