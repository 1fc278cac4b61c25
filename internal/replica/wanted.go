package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/devicemesh/federation/core"
)

// The wanted list (selective sync, see package policy): the keys whose
// current version this device holds as a stub and whose value it wants.
// It lives in a local-only internal collection, one record per key,
// written in the same commit as the stubs that put keys on it (or by
// Want, for Node.Fetch) and dropped in the commit that installs a value,
// so it survives a restart exactly as the data does. An in-memory copy
// serves the sessions, which ask their peers for it.

// WantedCollection holds the wanted list (local only).
const WantedCollection = InternalPrefix + "wanted"

// metaStubs lists the collections that have held a stub here (one name a
// line): backfill scans only those.
const metaStubs = "node.stubs"

// Wanted is one entry of the wanted list.
type Wanted struct{ Collection, Key string }

// wantedState is the in-memory copy of the wanted list and the set of
// collections that hold stubs.
type wantedState struct {
	mu    sync.Mutex
	keys  map[txKey]struct{}
	stubs map[string]bool // collections that have held a stub (metaStubs)
	// grew is woken when keys are added (the sessions ask for them).
	grew *Notifier
}

func wantedKey(coll, key string) string {
	return string(binary.AppendUvarint(nil, uint64(len(coll)))) + coll + key
}

func splitWantedKey(k string) (coll, key string, ok bool) {
	n, m := binary.Uvarint([]byte(k))
	if m <= 0 || uint64(len(k)-m) < n {
		return "", "", false
	}
	return k[m : m+int(n)], k[m+int(n):], true
}

// loadWanted reads the wanted list and the stub collections at open.
func (n *Replica) loadWanted(ctx context.Context) error {
	n.want.keys = map[txKey]struct{}{}
	n.want.stubs = map[string]bool{}
	n.want.grew = NewNotifier()
	err := n.store.Scan(ctx, WantedCollection, core.KeyRange{}, func(r core.Record) error {
		if c, k, ok := splitWantedKey(r.Key); ok {
			n.want.keys[txKey{c, k}] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load wanted list: %w", err)
	}
	b, err := n.store.Meta(ctx, metaStubs)
	switch {
	case errors.Is(err, core.ErrNotFound):
	case err != nil:
		return fmt.Errorf("load wanted list: %w", err)
	default:
		for _, c := range strings.Split(string(b), "\n") {
			if c != "" {
				n.want.stubs[c] = true
			}
		}
	}
	return nil
}

// wantsValues reports whether this device wants every value of coll.
func (n *Replica) wantsValues(coll string) bool {
	return n.cfg.WantValues != nil && n.cfg.WantValues(coll)
}

// wantedRecord is the record that puts (coll, key) on the wanted list, or
// takes it off (drop).
func (n *Replica) wantedRecord(coll, key string, drop bool, ts core.Timestamp) core.Record {
	r := core.Record{Collection: WantedCollection, Key: wantedKey(coll, key), Timestamp: ts, Origin: n.dev, Deleted: drop}
	if !drop {
		r.Value = []byte{}
	}
	return r
}

// noteStubs looks at a batch about to commit: a collection holding a stub
// for the first time is remembered (before the commit: a name too many
// costs a scan, one missing a backfill), and the stubs' keys are returned,
// for wantStubs to put on the wanted list once the commit is done. Called
// with writeMu.
func (n *Replica) noteStubs(ctx context.Context, b *core.Batch) ([]txKey, error) {
	var stubs []txKey
	var newColls []string
	n.want.mu.Lock()
	for _, r := range b.Records {
		if !r.Stub || Internal(r.Collection) {
			continue
		}
		if !n.want.stubs[r.Collection] && !slices.Contains(newColls, r.Collection) {
			newColls = append(newColls, r.Collection)
		}
		if _, ok := n.want.keys[txKey{r.Collection, r.Key}]; !ok {
			stubs = append(stubs, txKey{r.Collection, r.Key})
		}
	}
	n.want.mu.Unlock()
	if len(newColls) > 0 {
		if err := n.saveStubColls(ctx, newColls); err != nil {
			return nil, err
		}
	}
	return stubs, nil
}

// wantStubs puts on the wanted list the stubs a commit installed, of the
// collections whose values this device wants. It runs after that commit
// and after the work its observers handed off (a registry operation in
// the same batch may have changed this device's own policy: it is in
// force by now), in a commit of its own; a crash in between is made good
// by the backfill at the next open.
func (n *Replica) wantStubs(keys []txKey) {
	byColl := map[string][]string{}
	var colls []string
	for _, k := range keys {
		if !n.wantsValues(k.collection) {
			continue
		}
		if byColl[k.collection] == nil {
			colls = append(colls, k.collection)
		}
		byColl[k.collection] = append(byColl[k.collection], k.key)
	}
	for _, c := range colls {
		if err := n.Want(context.Background(), c, byColl[c]); err != nil && !errors.Is(err, core.ErrClosed) {
			n.log.Warn("put stubs on the wanted list", "collection", c, "err", err)
		}
	}
}

// saveStubColls adds colls to the persisted set of stub collections.
func (n *Replica) saveStubColls(ctx context.Context, colls []string) error {
	n.want.mu.Lock()
	for _, c := range colls {
		n.want.stubs[c] = true
	}
	names := make([]string, 0, len(n.want.stubs))
	for c := range n.want.stubs {
		names = append(names, c)
	}
	n.want.mu.Unlock()
	sort.Strings(names)
	if err := n.store.SetMeta(ctx, metaStubs, []byte(strings.Join(names, "\n"))); err != nil {
		return fmt.Errorf("remember stub collections: %w", err)
	}
	return nil
}

// wantedCommitted folds a committed batch's wanted-list records into the
// in-memory copy and wakes the sessions when keys were added. Called with
// writeMu, after the store commit.
func (n *Replica) wantedCommitted(records []core.Record) {
	grew := false
	n.want.mu.Lock()
	for _, r := range records {
		if r.Collection != WantedCollection {
			continue
		}
		c, k, ok := splitWantedKey(r.Key)
		if !ok {
			continue
		}
		if r.Deleted {
			delete(n.want.keys, txKey{c, k})
		} else {
			n.want.keys[txKey{c, k}] = struct{}{}
			grew = true
		}
	}
	n.want.mu.Unlock()
	if grew {
		n.want.grew.Notify()
	}
}

// WantedList returns the wanted list, sorted by collection and key.
func (n *Replica) WantedList() []Wanted {
	n.want.mu.Lock()
	out := make([]Wanted, 0, len(n.want.keys))
	for k := range n.want.keys {
		out = append(out, Wanted{k.collection, k.key})
	}
	n.want.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Collection != out[j].Collection {
			return out[i].Collection < out[j].Collection
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// WantedGrew returns a channel closed when keys are next added to the
// wanted list (take it before reading the list).
func (n *Replica) WantedGrew() <-chan struct{} { return n.want.grew.Wait() }

// Want puts keys of coll that this device holds as stubs on the wanted
// list (Node.Fetch); keys held whole, deleted or unknown are left out.
func (n *Replica) Want(ctx context.Context, coll string, keys []string) error {
	return n.Exclusive(ctx, "fetch", func() error {
		ts, err := n.hlc.Now()
		if err != nil {
			return err
		}
		var b core.Batch
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				continue
			}
			seen[k] = true
			r, err := n.store.Get(ctx, coll, k)
			if errors.Is(err, core.ErrNotFound) || (err == nil && !r.Stub) {
				continue
			}
			if err != nil {
				return fmt.Errorf("fetch: %w", err)
			}
			b.Records = append(b.Records, n.wantedRecord(coll, k, false, ts))
		}
		return n.commit(ctx, SourceFetch, b, nil, ts)
	})
}

// Backfill puts on the wanted list every stub of the collections whose
// values this device now wants (WantValues): after a policy change from
// on-demand (or summary, or a device override) to full, and at open. It
// scans only collections that have held stubs, and forgets those that
// hold none any more.
func (n *Replica) Backfill(ctx context.Context) (int, error) {
	n.want.mu.Lock()
	var colls []string
	for c := range n.want.stubs {
		colls = append(colls, c)
	}
	n.want.mu.Unlock()
	sort.Strings(colls)
	total := 0
	var empty []string
	for _, c := range colls {
		if !n.wantsValues(c) {
			continue
		}
		var keys []string
		err := n.store.Scan(ctx, c, core.KeyRange{}, func(r core.Record) error {
			if r.Stub {
				keys = append(keys, r.Key)
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("backfill %q: %w", c, err)
		}
		if len(keys) == 0 {
			empty = append(empty, c)
			continue
		}
		n.want.mu.Lock()
		fresh := keys[:0]
		for _, k := range keys {
			if _, ok := n.want.keys[txKey{c, k}]; !ok {
				fresh = append(fresh, k)
			}
		}
		n.want.mu.Unlock()
		if err := n.Want(ctx, c, fresh); err != nil {
			return total, err
		}
		total += len(fresh)
	}
	if len(empty) > 0 {
		n.want.mu.Lock()
		for _, c := range empty {
			delete(n.want.stubs, c)
		}
		n.want.mu.Unlock()
		if err := n.saveStubColls(ctx, nil); err != nil {
			return total, err
		}
	}
	return total, nil
}

// Fetched is a value received for a stub: the value of the version
// (Origin, Seq) of its key.
type Fetched struct {
	Origin core.DeviceID
	Seq    uint64
	Value  []byte
}

// Fill installs values received for stubs of coll (vals: key -> value).
// A value of the stub's version replaces the stub only if it matches the
// stub's size and digest; one that does not is refused (its key returned
// in refused, and kept on the wanted list). A value of another version
// (the sender holds a newer one, or an older one) is returned in stale
// and the key stays wanted, to be asked again once the versions agree. A
// key whose current version is no stub any more (a newer version arrived,
// or the value did) is dropped from the wanted list. The installed
// versions are the stubs' versions, whole: the Merkle trees do not change.
func (n *Replica) Fill(ctx context.Context, coll string, vals map[string]Fetched) (filled int, refused, stale []string, err error) {
	err = n.Exclusive(ctx, "", func() error {
		if err := n.alive(); err != nil {
			return err
		}
		ts, err := n.hlc.Now()
		if err != nil {
			return err
		}
		var b core.Batch
		var events []Event
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f := vals[k]
			v := f.Value
			cur, err := n.store.Get(ctx, coll, k)
			switch {
			case errors.Is(err, core.ErrNotFound):
			case err != nil:
				return fmt.Errorf("fill: %w", err)
			case !cur.Stub:
			case cur.Origin != f.Origin || cur.Seq != f.Seq:
				stale = append(stale, k)
				continue
			case len(v) != cur.ValueSize || core.ValueDigest(v) != cur.ValueDigest:
				refused = append(refused, k)
				continue
			default:
				full := cur
				full.Value, full.Stub, full.ValueSize, full.ValueDigest = v, false, 0, [32]byte{}
				b.Records = append(b.Records, full)
				events = append(events, Event{Kind: EventChange, Collection: coll, Key: k, Origin: n.OriginDevice(cur.Origin), Timestamp: cur.Timestamp})
				filled++
			}
			n.want.mu.Lock()
			_, listed := n.want.keys[txKey{coll, k}]
			n.want.mu.Unlock()
			if listed {
				b.Records = append(b.Records, n.wantedRecord(coll, k, true, ts))
			}
		}
		return n.commit(ctx, SourceFetch, b, events, ts)
	})
	return filled, refused, stale, err
}
