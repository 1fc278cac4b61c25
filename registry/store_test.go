package registry

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	_ "github.com/tursodatabase/go-libsql"

	"github.com/devicemesh/federation/core"
)

func openLibSQL(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("libsql", "file:"+filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for i := 0; i < 2; i++ { // idempotent, as after the store's migrations
		if err := EnsureSchema(context.Background(), db); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func forStores(t *testing.T, fn func(t *testing.T, st Store)) {
	t.Run("memory", func(t *testing.T) { fn(t, NewMemory()) })
	t.Run("libsql", func(t *testing.T) { fn(t, NewSQL(openLibSQL(t))) })
}

func TestSchemaHasTheSeedColumns(t *testing.T) {
	db := openLibSQL(t)
	rows, err := db.Query(`SELECT name, pk FROM pragma_table_info('device_registry') ORDER BY cid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var name string
		var pk int
		if err := rows.Scan(&name, &pk); err != nil {
			t.Fatal(err)
		}
		if (pk == 1) != (name == "device_id") {
			t.Fatalf("column %s pk=%d", name, pk)
		}
		cols = append(cols, name)
	}
	want := []string{"device_id", "device_name", "device_type", "public_key", "last_seen", "trust_level", "sync_policy", "revoked_at", "updated_at"}
	if !reflect.DeepEqual(cols, want) {
		t.Fatalf("columns %v, want %v", cols, want)
	}
}

func TestStoreRoundTripTouchAndTerminalRevocation(t *testing.T) {
	forStores(t, func(t *testing.T, st Store) {
		ctx := context.Background()
		a, b := ident(t, 1), ident(t, 2)
		da := Device{ID: a.DeviceID(), PublicKey: a.PublicKey(), Name: "Anna's phone ☎", Type: TypePhone,
			Trust: TrustTrusted, Policy: []byte(`{"media":"thumbnails"}`), UpdatedAt: ts(5)}
		db := Device{ID: b.DeviceID(), PublicKey: b.PublicKey(), Name: "tablet", Type: TypeTablet, Trust: TrustPending, UpdatedAt: ts(6)}
		for _, d := range []Device{da, db} {
			if err := st.Put(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		got, err := st.Get(ctx, a.DeviceID())
		if err != nil || !reflect.DeepEqual(got, da) {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, da)
		}
		if _, err := st.Get(ctx, core.DeviceID{9}); !errors.Is(err, core.ErrNotFound) {
			t.Fatalf("Get unknown: %v", err)
		}

		seen := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
		if err := st.Touch(ctx, a.DeviceID(), seen); err != nil {
			t.Fatal(err)
		}
		if err := st.Touch(ctx, a.DeviceID(), seen.Add(-time.Hour)); err != nil { // late, older report
			t.Fatal(err)
		}
		if err := st.Touch(ctx, core.DeviceID{9}, seen); !errors.Is(err, core.ErrNotFound) {
			t.Fatalf("Touch unknown: %v", err)
		}
		// A registry update (without LastSeen) keeps the local last-seen.
		renamed := da
		renamed.Name = "old phone"
		if err := st.Put(ctx, renamed); err != nil {
			t.Fatal(err)
		}
		got, _ = st.Get(ctx, a.DeviceID())
		if !got.LastSeen.Equal(seen) || got.Name != "old phone" {
			t.Fatalf("after touch and rename: %+v", got)
		}

		revoked := renamed
		revoked.Trust, revoked.RevokedAt = TrustRevoked, ts(9)
		if err := st.Put(ctx, revoked); err != nil {
			t.Fatal(err)
		}
		back := renamed
		back.Trust = TrustOwner
		if err := st.Put(ctx, back); err != nil {
			t.Fatal(err)
		}
		got, _ = st.Get(ctx, a.DeviceID())
		if got.Trust != TrustRevoked || got.RevokedAt != ts(9) {
			t.Fatalf("a revoked record came back as %s", got.Trust)
		}

		list, err := st.List(ctx)
		if err != nil || len(list) != 2 || list[0].ID.Compare(list[1].ID) >= 0 {
			t.Fatalf("List = %v, %v", list, err)
		}
	})
}

func TestAuthorizerAdmitsOnlyTrustedDevicesWithPinnedKeys(t *testing.T) {
	forStores(t, func(t *testing.T, st Store) {
		ctx := context.Background()
		m := newMesh(t)
		trusted, pending, revoked, stranger := ident(t, 1), ident(t, 2), ident(t, 3), ident(t, 4)
		must(t, m.s)(m.s.NewAdd(m.owner, ts(10), deviceOf(trusted, "t", TrustTrusted)))
		must(t, m.s)(m.s.NewAdd(m.owner, ts(11), deviceOf(pending, "p", TrustPending)))
		must(t, m.s)(m.s.NewAdd(m.owner, ts(12), deviceOf(revoked, "r", TrustTrusted)))
		must(t, m.s)(m.s.NewRevoke(trusted, ts(13), revoked.DeviceID()))
		if err := Save(ctx, st, m.s); err != nil {
			t.Fatal(err)
		}
		az := NewAuthorizer(st)
		for _, ok := range []struct {
			name string
			id   core.DeviceID
			key  core.PublicKey
		}{{"owner", m.owner.DeviceID(), m.owner.PublicKey()}, {"trusted", trusted.DeviceID(), trusted.PublicKey()}} {
			if err := az.Authorize(ctx, ok.id, ok.key); err != nil {
				t.Errorf("%s refused: %v", ok.name, err)
			}
		}
		for _, bad := range []struct {
			name string
			id   core.DeviceID
			key  core.PublicKey
		}{
			{"unknown", stranger.DeviceID(), stranger.PublicKey()},
			{"pending", pending.DeviceID(), pending.PublicKey()},
			{"revoked", revoked.DeviceID(), revoked.PublicKey()},
			{"trusted id with another key", trusted.DeviceID(), stranger.PublicKey()},
		} {
			if err := az.Authorize(ctx, bad.id, bad.key); !errors.Is(err, core.ErrUnauthorized) {
				t.Errorf("%s: Authorize = %v, want core.ErrUnauthorized", bad.name, err)
			}
		}
	})
}
