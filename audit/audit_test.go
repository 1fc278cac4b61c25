package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/tursodatabase/go-libsql"

	"github.com/devicemesh/federation/core"
)

// harness is one backend plus the means an attacker with write access to
// its storage has: edit, delete and swap rows behind the Log's back.
type harness struct {
	backend Backend
	edit    func(t *testing.T, seq uint64, fn func(*Entry))
	delete  func(t *testing.T, seq uint64)
	swap    func(t *testing.T, a, b uint64)
	// reopen returns a second backend over the same storage (a restart).
	reopen func() Backend
}

func memHarness(t *testing.T) harness {
	m := NewMemory()
	find := func(t *testing.T, seq uint64) int {
		for i, e := range m.entries {
			if e.Seq == seq {
				return i
			}
		}
		t.Fatalf("no row %d", seq)
		return -1
	}
	return harness{
		backend: m,
		edit: func(t *testing.T, seq uint64, fn func(*Entry)) {
			fn(&m.entries[find(t, seq)])
		},
		delete: func(t *testing.T, seq uint64) {
			i := find(t, seq)
			m.entries = append(m.entries[:i], m.entries[i+1:]...)
			delete(m.taken, seq)
		},
		swap: func(t *testing.T, a, b uint64) {
			i, j := find(t, a), find(t, b)
			// Exchange the contents but keep the row keys, as a swap of
			// two rows of a table keyed by seq does.
			m.entries[i], m.entries[j] = m.entries[j], m.entries[i]
			m.entries[i].Seq, m.entries[j].Seq = a, b
		},
		reopen: func() Backend { return m },
	}
}

func openLibSQL(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("libsql", "file:"+filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := EnsureSchema(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	// A second call must be harmless (migrations may have run first).
	if err := EnsureSchema(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

func sqlHarness(t *testing.T) harness {
	db := openLibSQL(t)
	s := NewSQL(db)
	exec := func(t *testing.T, q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return harness{
		backend: s,
		edit: func(t *testing.T, seq uint64, fn func(*Entry)) {
			var e Entry
			err := s.Scan(context.Background(), func(x Entry) error {
				if x.Seq == seq {
					e = x
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			fn(&e)
			var dev any
			if !e.Device.IsZero() {
				dev = e.Device[:]
			}
			exec(t, `UPDATE audit SET at=?, kind=?, device=?, detail=?, prev_hash=?, hash=? WHERE seq=?`,
				e.At.UnixMilli(), e.Kind.String(), dev, EncodeDetail(e.Detail), e.PrevHash[:], e.Hash[:], int64(seq))
		},
		delete: func(t *testing.T, seq uint64) { exec(t, `DELETE FROM audit WHERE seq=?`, int64(seq)) },
		swap: func(t *testing.T, a, b uint64) {
			exec(t, `UPDATE audit SET seq=-1 WHERE seq=?`, int64(a))
			exec(t, `UPDATE audit SET seq=? WHERE seq=?`, int64(a), int64(b))
			exec(t, `UPDATE audit SET seq=? WHERE seq=-1`, int64(b))
		},
		reopen: func() Backend { return NewSQL(db) },
	}
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

var (
	devA = core.DeviceID{1}
	devB = core.DeviceID{2}
	t0   = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
)

// fill appends n entries, one minute apart, alternating devices and kinds.
func fill(t *testing.T, l *Log, n int) []Entry {
	t.Helper()
	kinds := []Kind{KindSessionOpened, KindBatchSent, KindBatchReceived, KindSessionClosed}
	var out []Entry
	for i := 0; i < n; i++ {
		dev := devA
		if i%2 == 1 {
			dev = devB
		}
		e, err := l.Append(context.Background(), Entry{
			At:     t0.Add(time.Duration(i) * time.Minute),
			Kind:   kinds[i%len(kinds)],
			Device: dev,
			Detail: Detail{Num("changes", int64(10*i)), Text("collection", "profile")},
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func wantTamperAt(t *testing.T, err error, seq uint64) {
	t.Helper()
	var te *TamperError
	if !errors.As(err, &te) {
		t.Fatalf("Verify = %v, want a *TamperError", err)
	}
	if !errors.Is(err, ErrTampered) || !errors.Is(err, core.ErrCorrupt) {
		t.Fatalf("Verify error %v does not wrap ErrTampered and core.ErrCorrupt", err)
	}
	if te.Seq != seq {
		t.Fatalf("Verify named row %d (%s), want %d", te.Seq, te.Reason, seq)
	}
}

func forBackends(t *testing.T, fn func(t *testing.T, h harness)) {
	t.Run("memory", func(t *testing.T) { fn(t, memHarness(t)) })
	t.Run("libsql", func(t *testing.T) { fn(t, sqlHarness(t)) })
}

func TestCleanLogVerifies(t *testing.T) {
	forBackends(t, func(t *testing.T, h harness) {
		ctx := context.Background()
		l := New(h.backend, Options{})
		if err := l.Verify(ctx); err != nil {
			t.Fatalf("empty log: %v", err)
		}
		es := fill(t, l, 10)
		if err := l.Verify(ctx); err != nil {
			t.Fatalf("clean log: %v", err)
		}
		// After a restart the chain continues where it was.
		l2 := New(h.reopen(), Options{})
		e, err := l2.Append(ctx, Entry{At: t0, Kind: KindRefusal, Device: devB, Detail: Detail{Text("reason", "revoked")}})
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq != 11 || e.PrevHash != es[9].Hash {
			t.Fatalf("appended after restart: seq %d, prev %x; want 11 chained to %x", e.Seq, e.PrevHash, es[9].Hash)
		}
		if err := l2.Verify(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := l2.Query(ctx, Filter{AfterSeq: 10})
		if err != nil || len(got) != 1 {
			t.Fatalf("query = %v, %v", got, err)
		}
		if r, _ := got[0].Detail.Get("reason"); r.Text != "revoked" || got[0].Kind != KindRefusal || got[0].Device != devB || !got[0].At.Equal(t0) {
			t.Fatalf("stored entry read back as %+v", got[0])
		}
	})
}

func TestEditedRowIsNamed(t *testing.T) {
	edits := map[string]func(*Entry){
		"detail count": func(e *Entry) { e.Detail = Detail{Num("changes", 9999), Text("collection", "profile")} },
		"time":         func(e *Entry) { e.At = e.At.Add(time.Hour) },
		"kind":         func(e *Entry) { e.Kind = KindPairing },
		"device":       func(e *Entry) { e.Device = core.DeviceID{9} },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			forBackends(t, func(t *testing.T, h harness) {
				l := New(h.backend, Options{})
				fill(t, l, 8)
				h.edit(t, 4, edit)
				wantTamperAt(t, l.Verify(context.Background()), 4)
			})
		})
	}
}

func TestEditedRowWithRecomputedHashIsCaught(t *testing.T) {
	forBackends(t, func(t *testing.T, h harness) {
		l := New(h.backend, Options{})
		fill(t, l, 8)
		// The attacker rewrites row 4 consistently; the chain breaks at 5.
		h.edit(t, 4, func(e *Entry) {
			e.Detail = Detail{Num("changes", 0)}
			e.Hash = e.ComputeHash()
		})
		wantTamperAt(t, l.Verify(context.Background()), 5)
	})
}

func TestDeletedRowIsNamed(t *testing.T) {
	forBackends(t, func(t *testing.T, h harness) {
		l := New(h.backend, Options{})
		fill(t, l, 8)
		h.delete(t, 3)
		wantTamperAt(t, l.Verify(context.Background()), 3)
	})
	forBackends(t, func(t *testing.T, h harness) {
		l := New(h.backend, Options{})
		fill(t, l, 8)
		h.delete(t, 1)
		wantTamperAt(t, l.Verify(context.Background()), 1)
	})
}

func TestTruncatedTailIsCaughtAgainstHead(t *testing.T) {
	forBackends(t, func(t *testing.T, h harness) {
		ctx := context.Background()
		l := New(h.backend, Options{})
		fill(t, l, 8)
		head, err := l.Head(ctx)
		if err != nil || head.Seq != 8 {
			t.Fatalf("head = %+v, %v", head, err)
		}
		h.delete(t, 8)
		h.delete(t, 7)
		// The Log that wrote rows 7 and 8 notices they are gone.
		wantTamperAt(t, l.Verify(ctx), 7)
		// After a restart, the remembered head still catches it.
		wantTamperAt(t, New(h.reopen(), Options{}).VerifyHead(ctx, head), 7)
	})
}

func TestSwappedRowsAreNamed(t *testing.T) {
	forBackends(t, func(t *testing.T, h harness) {
		l := New(h.backend, Options{})
		fill(t, l, 8)
		h.swap(t, 5, 6)
		wantTamperAt(t, l.Verify(context.Background()), 5)
	})
}

func TestRawSQLTampering(t *testing.T) {
	ctx := context.Background()
	for name, q := range map[string]string{
		"update detail":  `UPDATE audit SET detail = X'0105636f756e74000000000000000500' WHERE seq = 6`,
		"update at":      `UPDATE audit SET at = at + 1000 WHERE seq = 6`,
		"garbage detail": `UPDATE audit SET detail = X'ff00' WHERE seq = 6`,
		"bad kind":       `UPDATE audit SET kind = 'nonsense' WHERE seq = 6`,
		"short hash":     `UPDATE audit SET hash = X'00' WHERE seq = 6`,
		"short device":   `UPDATE audit SET device = X'01' WHERE seq = 6`,
		"null detail":    `UPDATE audit SET detail = NULL WHERE seq = 6`,
	} {
		t.Run(name, func(t *testing.T) {
			db := openLibSQL(t)
			l := New(NewSQL(db), Options{})
			fill(t, l, 10)
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
			wantTamperAt(t, l.Verify(ctx), 6)
		})
	}
}

func TestQueryFilters(t *testing.T) {
	forBackends(t, func(t *testing.T, h harness) {
		ctx := context.Background()
		l := New(h.backend, Options{})
		fill(t, l, 12) // entry i at t0+i min, device A on even i, kinds cycle
		seqs := func(f Filter) []uint64 {
			t.Helper()
			es, err := l.Query(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []uint64
			for _, e := range es {
				if !f.Match(&e) {
					t.Fatalf("query returned non-matching entry %+v", e)
				}
				out = append(out, e.Seq)
			}
			return out
		}
		cases := []struct {
			name string
			f    Filter
			want []uint64
		}{
			{"all", Filter{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
			{"time range", Filter{From: t0.Add(3 * time.Minute), To: t0.Add(6 * time.Minute)}, []uint64{4, 5, 6}},
			{"device", Filter{Device: devB}, []uint64{2, 4, 6, 8, 10, 12}},
			{"kind", Filter{Kinds: []Kind{KindBatchSent}}, []uint64{2, 6, 10}},
			{"kinds", Filter{Kinds: []Kind{KindSessionOpened, KindSessionClosed}}, []uint64{1, 4, 5, 8, 9, 12}},
			{"device and kind", Filter{Device: devA, Kinds: []Kind{KindSessionOpened, KindBatchReceived}}, []uint64{1, 3, 5, 7, 9, 11}},
			{"limit", Filter{Device: devA, Limit: 2}, []uint64{1, 3}},
			{"paging", Filter{Device: devA, AfterSeq: 3, Limit: 2}, []uint64{5, 7}},
			{"nothing", Filter{Kinds: []Kind{KindPairing}}, nil},
			{"empty range", Filter{From: t0.Add(time.Hour)}, nil},
		}
		for _, c := range cases {
			if got := seqs(c.f); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("%s: got %v, want %v", c.name, got, c.want)
			}
		}
		if _, err := l.Query(ctx, Filter{Limit: -1}); !errors.Is(err, core.ErrInvalidArgument) {
			t.Errorf("negative limit: %v", err)
		}
	})
}

func TestConcurrentAppendsStayOneChain(t *testing.T) {
	forBackends(t, func(t *testing.T, h harness) {
		ctx := context.Background()
		l := New(h.backend, Options{Clock: fixedClock{t0}})
		const workers, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					_, err := l.Append(ctx, Entry{Kind: KindBatchReceived, Device: core.DeviceID{byte(w)}, Detail: Detail{Num("changes", int64(i))}})
					if err != nil {
						errs <- err
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if err := l.Verify(ctx); err != nil {
			t.Fatal(err)
		}
		es, err := l.Query(ctx, Filter{})
		if err != nil || len(es) != workers*each {
			t.Fatalf("got %d entries (%v), want %d", len(es), err, workers*each)
		}
		if !es[0].At.Equal(t0) {
			t.Fatalf("zero At not stamped from the clock: %v", es[0].At)
		}
	})
}

func TestAppendRefusesPayloadsAndPersonalText(t *testing.T) {
	l := New(NewMemory(), Options{})
	long := make(Detail, MaxFields+1)
	for i := range long {
		long[i] = Num(fmt.Sprintf("k%02d", i), 1)
	}
	for name, e := range map[string]Entry{
		"no kind":        {Detail: Detail{Num("n", 1)}},
		"unknown kind":   {Kind: kindEnd},
		"sentence":       {Kind: KindConflictResolved, Detail: Detail{Text("note", "dinner with Alice at 8")}},
		"long text":      {Kind: KindRefusal, Detail: Detail{Text("reason", string(make([]byte, MaxTextLen+1)))}},
		"control chars":  {Kind: KindRefusal, Detail: Detail{Text("reason", "a\nb")}},
		"upper key":      {Kind: KindRefusal, Detail: Detail{Num("Count", 1)}},
		"empty key":      {Kind: KindRefusal, Detail: Detail{Num("", 1)}},
		"duplicate key":  {Kind: KindRefusal, Detail: Detail{Num("n", 1), Num("n", 2)}},
		"too many field": {Kind: KindRefusal, Detail: long},
	} {
		if _, err := l.Append(context.Background(), e); !errors.Is(err, ErrInvalidEntry) || !errors.Is(err, core.ErrInvalidArgument) {
			t.Errorf("%s: Append = %v, want ErrInvalidEntry", name, err)
		}
	}
	if es, _ := l.Query(context.Background(), Filter{}); len(es) != 0 {
		t.Fatalf("refused entries were stored: %v", es)
	}
}

func TestKindNames(t *testing.T) {
	seen := map[string]bool{}
	for k := Kind(1); k < kindEnd; k++ {
		s := k.String()
		if seen[s] {
			t.Fatalf("duplicate name %q", s)
		}
		seen[s] = true
		if got, err := ParseKind(s); err != nil || got != k {
			t.Fatalf("ParseKind(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseKind("kind(0)"); err == nil {
		t.Fatal("ParseKind accepted an invalid name")
	}
}

func TestTwoWritersOnOneTableNeverFork(t *testing.T) {
	ctx := context.Background()
	db := openLibSQL(t)
	l1, l2 := New(NewSQL(db), Options{}), New(NewSQL(db), Options{})
	if _, err := l1.Append(ctx, Refusal(devA, "unknown")); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Append(ctx, Refusal(devA, "unknown")); err != nil {
		t.Fatal(err)
	}
	// l1's idea of the head is stale: its append must fail, not fork.
	if _, err := l1.Append(ctx, Refusal(devB, "revoked")); err == nil {
		t.Fatal("a stale writer appended a second row 2")
	}
	if e, err := l1.Append(ctx, Refusal(devB, "revoked")); err != nil || e.Seq != 3 {
		t.Fatalf("retry after reload: seq %d, %v", e.Seq, err)
	}
	if err := l2.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestEventConstructorsAreValidEntries(t *testing.T) {
	ctx := context.Background()
	l := New(NewMemory(), Options{Clock: fixedClock{t0}})
	for _, e := range []Entry{
		SessionOpened(devA, "direct"), SessionClosed(devA, "done"),
		BatchSent(devB, "conversations", 3, 120, 40960), BatchReceived(devB, "profile", 1, 2, 64),
		ConflictDetected(devA, "profile"), ConflictResolved(devA, "profile", "lww"),
		Refusal(devB, "revoked"), Pairing(devB, "approved"),
	} {
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatalf("%s: %v", e.Kind, err)
		}
	}
	got, err := l.Query(ctx, Filter{Kinds: []Kind{KindBatchSent}})
	if err != nil || len(got) != 1 {
		t.Fatalf("query: %v %v", got, err)
	}
	if c, _ := got[0].Detail.Get("changes"); c.Num != 120 {
		t.Fatalf("batch count read back as %d", c.Num)
	}
}

func TestConstructorsSanitizeOddNames(t *testing.T) {
	l := New(NewMemory(), Options{})
	long := string(make([]byte, 100))
	e, err := l.Append(context.Background(), BatchSent(devA, "my notes ✓"+long, 1, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := e.Detail.Get("collection"); len(c.Text) != MaxTextLen || c.Text[:8] != "my_notes" {
		t.Fatalf("collection stored as %q", c.Text)
	}
}
