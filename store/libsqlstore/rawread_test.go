package libsqlstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/devicemesh/federation/core"
)

// commitMixed commits txns transactions of perTxn changes of origin
// (values of 0 to 3,000 bytes, tombstones, empty values, a stub, two
// collections) after seq, and returns the new seq.
func commitMixed(t *testing.T, st *Store, origin core.DeviceID, seq uint64, txns, perTxn int) uint64 {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < txns; i++ {
		var b core.Batch
		first := seq + 1
		for j := 0; j < perTxn; j++ {
			seq++
			coll := "c"
			if seq%3 == 0 {
				coll = "conversations"
			}
			r := core.Record{Collection: coll, Key: fmt.Sprintf("k%06d", seq%500), Value: bytes.Repeat([]byte{byte(seq), byte(seq >> 8)}, int(seq%1500)),
				Timestamp: core.Timestamp(seq), Origin: origin, Seq: seq, Context: core.VersionVector{origin: seq}}
			switch {
			case seq%11 == 0:
				r.Deleted, r.Value = true, nil
			case seq%13 == 0:
				r = r.AsStub()
			}
			b.Changes = append(b.Changes, core.Change{Record: r, TxnFirst: first, TxnLen: uint32(perTxn)})
			b.Records = append(b.Records, r)
		}
		if err := st.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	return seq
}

// readThroughDriver reads every change of origin through go-libsql (the
// path the store's own connections replace).
func readThroughDriver(t *testing.T, st *Store, origin core.DeviceID) []core.Change {
	t.Helper()
	ctx := context.Background()
	idx, ok := st.dict.index(origin)
	if !ok {
		t.Fatal("origin unknown")
	}
	conn, err := st.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var all []core.Change
	after := uint64(0)
	for {
		var page []core.Change
		err := conn.Raw(func(dc any) error {
			var err error
			page, _, err = st.changesPageRaw(ctx, dc, origin, idx, after, pageRows)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
}

// Changes reads on the store's own connections, plain and encrypted, and
// gives exactly what reading through go-libsql gives: values, tombstones,
// empty values, stubs, metadata, across pages and limits. Values of one
// page share memory but never overlap: appending to one leaves the next
// intact. Close releases the connections (the file reopens at once).
func TestOwnReadersReadChanges(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"encrypted", bytes.Repeat([]byte{9}, KeySize)}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "own.db")
			st, err := Open(ctx, path, Options{Key: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			origin := core.DeviceIDFromKey(core.PublicKey{3})
			last := commitMixed(t, st, origin, 0, 4, 300)
			want := readThroughDriver(t, st, origin)
			if uint64(len(want)) != last {
				t.Fatalf("driver read %d changes, want %d", len(want), last)
			}
			for _, limit := range []int{0, 1, 7, 256, 1000} {
				var got []core.Change
				err := st.Changes(ctx, origin, 0, limit, func(c core.Change) error { got = append(got, c); return nil })
				if err != nil {
					t.Fatal(err)
				}
				n := len(want)
				if limit > 0 {
					n = min(n, limit)
				}
				if !reflect.DeepEqual(got, want[:n]) {
					t.Fatalf("limit %d: own connections read %d changes that differ from the driver's %d", limit, len(got), n)
				}
				for i := 0; i+1 < len(got); i++ {
					if v := got[i].Value; v != nil {
						_ = append(v, 0xee) // must not reach the next value
					}
				}
				if !reflect.DeepEqual(got, want[:n]) {
					t.Fatalf("limit %d: values overlap", limit)
				}
			}
			st.raw.mu.Lock()
			open, failed := st.raw.open, st.raw.failed
			st.raw.mu.Unlock()
			if open == 0 || failed {
				t.Fatalf("own connections not used: %d open, failed %v", open, failed)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			if st.raw.open != 0 {
				t.Fatalf("%d own connections left open after Close", st.raw.open)
			}
			if err := st.Changes(ctx, origin, 0, 0, func(core.Change) error { return nil }); !errors.Is(err, core.ErrClosed) {
				t.Fatalf("Changes after Close: %v", err)
			}
			st, err = Open(ctx, path, Options{Key: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if got := readThroughDriver(t, st, origin); !reflect.DeepEqual(got, want) {
				t.Fatal("changes differ after reopening")
			}
		})
	}
}

// Readers on the own connections run while the writer commits and while
// the store closes: every read sees whole transactions in order, at most
// MaxReaders connections open (more readers fall back to the driver), and
// reads cut off by Close fail with core.ErrClosed, never crash.
func TestOwnReadersConcurrentAndClose(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "own.db"), Options{MaxReaders: 2})
	if err != nil {
		t.Fatal(err)
	}
	origin := core.DeviceIDFromKey(core.PublicKey{4})
	const perTxn = 50
	seq := commitMixed(t, st, origin, 0, 2, perTxn)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for r := 0; r < 6; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := uint64(0)
				err := st.Changes(ctx, origin, 0, 0, func(c core.Change) error {
					if n++; c.Seq != n {
						return fmt.Errorf("change %d read as %d", n, c.Seq)
					}
					return nil
				})
				switch {
				case errors.Is(err, core.ErrClosed):
					return
				case err != nil:
					errs <- err
					return
				case n%perTxn != 0:
					errs <- fmt.Errorf("read %d changes: a transaction cut", n)
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		seq = commitMixed(t, st, origin, seq, 1, perTxn)
	}
	// The readers loop until stop: under load they may start late, so
	// wait for the first of them to hold a connection.
	open := 0
	for deadline := time.Now().Add(10 * time.Second); open == 0 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		st.raw.mu.Lock()
		open = st.raw.open
		st.raw.mu.Unlock()
	}
	if open == 0 || open > 2 {
		t.Errorf("%d own connections open, want 1 or 2", open)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A page as large as the connection's last one is copied into one buffer,
// not into buffers growing from the smallest (which allocated about twice
// what a sync's full pages hold); without a hint the first buffer is small.
func TestArenaSizedByLastPage(t *testing.T) {
	src := make([]byte, 1024)
	pieces := func(a *arena, n int) (buffers int) {
		var base *byte
		for i := 0; i < n; i++ {
			a.copy(unsafe.Pointer(&src[0]), len(src))
			if b := unsafe.SliceData(a.buf); b != base {
				buffers, base = buffers+1, b
			}
		}
		return buffers
	}
	cold := newArena(0)
	if n := pieces(&cold, 250); n < 5 {
		t.Fatalf("a page without a hint took %d buffers, want growth from %d bytes", n, arenaFirst)
	}
	if cold.used != 250*len(src) {
		t.Fatalf("used %d", cold.used)
	}
	warm := newArena(cold.used)
	if n := pieces(&warm, 250); n != 1 {
		t.Fatalf("a page like the last took %d buffers", n)
	}
	// A value that gets its own buffer does not size the next page's.
	own := newArena(0)
	large := make([]byte, arenaChunk)
	own.copy(unsafe.Pointer(&large[0]), len(large))
	if own.used != 0 {
		t.Fatalf("a value of its own counted %d bytes", own.used)
	}
	big := newArena(64 << 20)
	if big.next != arenaFirstMax {
		t.Fatalf("first buffer of %d bytes, want at most %d", big.next, arenaFirstMax)
	}
}
