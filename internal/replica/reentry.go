package replica

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
)

// ErrReentrantWrite reports a call, made from inside the function given to
// Node.Update, to a Node method that needs the node's write lock (Put,
// Delete, Update, Resolve, Stats, Conflicts, the registry operations,
// Close...). That lock is held until the function returns, so the call
// would wait for itself forever; it fails at once instead. Writes inside a
// transaction go through its Tx.
var ErrReentrantWrite = errors.New("write lock taken from inside an Update callback (write through its Tx)")

// txCtxKey marks the context a transaction hands to its function
// (Tx.Context); its value is the *txn.
type txCtxKey struct{}

// txn is a local transaction whose function runs (see Update).
type txn struct{ rep *Replica }

// Update runs fn with the write lock held and commits the writes it
// returns as one local transaction; an error from fn (or a panic) commits
// nothing. fn gets ctx marked as the transaction's: a call made with it
// (or a context derived from it) that takes the write lock fails with
// ErrReentrantWrite instead of waiting for itself. op names the call in
// that error. Work handed off by observers runs once the lock is released,
// before Update returns.
func (n *Replica) Update(ctx context.Context, op string, fn func(ctx context.Context) ([]Op, error)) error {
	if err := n.lockWrite(ctx, op); err != nil {
		return err
	}
	defer n.unlock()
	tx := &txn{rep: n}
	tctx := context.WithValue(ctx, txCtxKey{}, tx)
	n.activeTx.Store(tx)
	ops, err := func() ([]Op, error) {
		defer n.activeTx.Store(nil)
		return callTxFn(tctx, fn)
	}()
	if err != nil {
		return err
	}
	return n.commitLocal(ctx, ops)
}

// lockWrite takes the write lock for a host-facing call named op, or fails
// with ErrReentrantWrite when the call comes from inside one of this node's
// Update callbacks and would therefore wait for itself. Two signs identify
// such a call, neither of which can mistake a concurrent writer on another
// goroutine for a re-entrant one:
//
//   - ctx is (or derives from) the running transaction's Tx.Context(): the
//     call is made on the transaction's behalf, from its goroutine or from
//     one it waits for;
//   - the lock is held by a running callback and the calling goroutine's own
//     stack runs an Update callback.
//
// The second rule cannot tell which node's callback the goroutine is in: a
// callback of node A that writes to node B while B runs a callback on
// another goroutine gets ErrReentrantWrite rather than waiting for it (it
// could otherwise deadlock, A waiting for B and B for A).
func (n *Replica) lockWrite(ctx context.Context, op string) error {
	if err := n.checkReentry(ctx, op); err != nil {
		return err
	}
	if n.writeMu.TryLock() {
		return nil
	}
	if n.activeTx.Load() != nil && inUpdateCallback() {
		return fmt.Errorf("%s: %w", op, ErrReentrantWrite)
	}
	n.writeMu.Lock()
	return nil
}

// RefuseReentry fails with ErrReentrantWrite when a call that will take
// the write lock later, after effects of its own, comes from inside one of
// this node's Update callbacks (lockWrite's rules, checked up front).
func (n *Replica) RefuseReentry(ctx context.Context, op string) error {
	if err := n.checkReentry(ctx, op); err != nil {
		return err
	}
	if n.activeTx.Load() != nil && inUpdateCallback() {
		return fmt.Errorf("%s: %w", op, ErrReentrantWrite)
	}
	return nil
}

// checkReentry applies the first rule of lockWrite alone.
func (n *Replica) checkReentry(ctx context.Context, op string) error {
	if ctx == nil {
		return nil
	}
	if tx, ok := ctx.Value(txCtxKey{}).(*txn); ok && tx.rep == n && n.activeTx.Load() == tx {
		return fmt.Errorf("%s: %w", op, ErrReentrantWrite)
	}
	return nil
}

// callTxFn runs a transaction's function; its frame on a goroutine's stack
// is what inUpdateCallback looks for.
//
//go:noinline
func callTxFn(ctx context.Context, fn func(context.Context) ([]Op, error)) ([]Op, error) {
	return fn(ctx)
}

// InUpdate reports whether a transaction's function runs and the calling
// goroutine is inside an Update callback (Close must then refuse: it would
// wait for that callback forever).
func (n *Replica) InUpdate() bool {
	return n.activeTx.Load() != nil && inUpdateCallback()
}

// inUpdateCallback reports whether the calling goroutine is running inside
// a function given to Update (of any node). It walks only the caller's own
// stack, and runs only when the write lock is contended by a callback.
func inUpdateCallback() bool {
	entry := runtime.FuncForPC(reflect.ValueOf(callTxFn).Pointer()).Entry()
	var pcs [64]uintptr
	for skip := 2; ; skip += len(pcs) {
		k := runtime.Callers(skip, pcs[:])
		frames := runtime.CallersFrames(pcs[:k])
		for {
			f, more := frames.Next()
			if f.Entry == entry {
				return true
			}
			if !more {
				break
			}
		}
		if k < len(pcs) {
			return false
		}
	}
}
