// Command quickstart is the SDK's first demo: three devices of one user (a
// phone, a laptop and a tablet) run in this process, each with its own
// libSQL file in a temporary directory, talking QUIC on the loopback
// interface. They are introduced to each other, write data of every type of
// the design's table while apart (so that real conflicts arise), then
// connect, sync and converge: every conflict is resolved by its collection's
// strategy, and a decision left to the user is resolved through the API.
//
//	go run ./examples/quickstart
//
// It ends with the line "converged: 3 devices, <records> records, root <hex>".
//
// Every device's libSQL file is encrypted at rest (Config.Encryption). The
// example keeps each device's key, 32 random bytes made at its first start,
// in a file of its own beside the device's data directory (mode 0600), and
// hands it to the SDK through a KeyProvider; a real host would keep the key
// in the operating system's keychain instead, since a key stored next to
// the data protects it only from whoever copies the data alone.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/crdt"
)

// decisions is the demo's collection whose conflicts the user settles.
const decisions = "decisions"

type device struct {
	name string
	node *federation.Node
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "federation-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("1. three devices start, each with its own encrypted libSQL file under %s", dir)
	var devs []*device
	for _, name := range []string{"phone", "laptop", "tablet"} {
		var logger *slog.Logger
		if os.Getenv("FED_LOG") != "" { // FED_LOG=1 shows the SDK's logs
			logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		n, err := federation.New(federation.Config{
			Logger: logger,
			Dir:    dir + "/" + name,
			Encryption: federation.EncryptionConfig{
				KeyProvider: func(context.Context) ([]byte, error) {
					return deviceKey(dir + "/" + name + ".key")
				},
			},
			Device:  federation.DeviceConfig{Name: name, Type: name},
			Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"},
			Collections: map[string]federation.Policy{
				decisions: {Priority: federation.PriorityHigh, Resolver: conflict.Manual{}},
				// Embeddings and media are on-demand by default (their
				// values stay behind until Node.Fetch); this demo shows
				// their merges, so every device takes them whole.
				federation.CollectionEmbeddings: {Priority: federation.PriorityLow, Resolver: conflict.Default(federation.CollectionEmbeddings)},
				federation.CollectionMedia:      {Priority: federation.PriorityLow, Resolver: conflict.Default(federation.CollectionMedia)},
				// Analytics are periodic (one batch per interval); a
				// demo's interval is short.
				federation.CollectionAnalytics: {Priority: federation.PriorityLow, Mode: federation.ModePeriodic, Interval: time.Second, Resolver: conflict.Union{}},
			},
			// Stale embeddings (divergent content merged) are re-embedded
			// by the host's model; here, a stand-in that returns a vector.
			Reembed: func(ctx context.Context, coll, key string, stale conflict.Embedding) ([]float32, error) {
				return []float32{0.1, 0.2, 0.3}, nil
			},
		})
		if err != nil {
			return err
		}
		defer n.Close()
		if err := n.Start(ctx); err != nil {
			return err
		}
		devs = append(devs, &device{name: name, node: n})
		fmt.Printf("   %-7s id %s  listening on %s\n", name, n.DeviceID().Short(), n.Addr())
	}
	phone, laptop, tablet := devs[0], devs[1], devs[2]

	step("2. before they know each other, every device writes data of every type")
	fmt.Println("   (profile, conversation, personality, embeddings, analytics, media, cache, a decision)")
	if err := writeAll(ctx, devs); err != nil {
		return err
	}

	step("3. pairing: the laptop and the tablet join the phone with the user's approval, then sync")
	for _, d := range []*device{laptop, tablet} {
		if err := pair(ctx, phone, d); err != nil {
			return err
		}
	}
	fmt.Println("   the laptop and the tablet each sync with the phone; the phone relays between them")
	if err := waitConverged(ctx, devs, false); err != nil {
		return err
	}
	fmt.Println("   synced; concurrent versions merged by each collection's strategy")

	step("4. a decision was left to the user: resolve it through the API")
	if err := resolveDecision(ctx, devs); err != nil {
		return err
	}
	if err := waitConverged(ctx, devs, true); err != nil {
		return err
	}
	return summary(ctx, devs)
}

// deviceKey returns the encryption key kept in the file at path, creating
// it (32 random bytes, readable by the owner only) on first use.
func deviceKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

func step(format string, args ...any) { fmt.Printf("\n== "+format+"\n", args...) }

// pair runs the pairing ceremony: host opens an invitation, joiner uses
// its QR string, both show the short authentication string, and the
// program, playing the user, approves on host only if they match.
func pair(ctx context.Context, host, joiner *device) error {
	shown := make(chan string, 1)
	inv, err := host.node.Invite(ctx, federation.InviteOptions{
		TTL: time.Minute,
		Approve: func(ctx context.Context, r federation.PairRequest) (bool, error) {
			select {
			case theirs := <-shown:
				fmt.Printf("   %s shows %s, %s shows %s: %s\n", host.name, r.SAS, joiner.name, theirs, verdict(r.SAS == theirs))
				return r.SAS == theirs, nil
			case <-ctx.Done():
				return false, ctx.Err()
			}
		},
	})
	if err != nil {
		return err
	}
	fmt.Printf("   %s invites: code %s\n", host.name, inv.Code)
	_, err = joiner.node.Join(ctx, inv.QR, federation.JoinOptions{Show: func(r federation.PairRequest) { shown <- r.SAS }})
	if err != nil {
		return fmt.Errorf("pair %s with %s: %w", joiner.name, host.name, err)
	}
	fmt.Printf("   %s joined\n", joiner.name)
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "they match, the user approves"
	}
	return "they differ, the user refuses"
}

// writeAll writes data of every type while the devices are apart.
func writeAll(ctx context.Context, devs []*device) error {
	phone, laptop, tablet := devs[0], devs[1], devs[2]
	// Profile: per-field last-writer-wins. Different fields edited on two
	// devices both survive; the same field keeps the later edit.
	if err := profileSet(ctx, phone, "name", "Ada"); err != nil {
		return err
	}
	if err := profileSet(ctx, laptop, "city", "Lisbon"); err != nil {
		return err
	}
	if err := profileSet(ctx, laptop, "mood", "curious"); err != nil {
		return err
	}
	if err := profileSet(ctx, tablet, "mood", "cheerful"); err != nil {
		return err
	}
	// Conversation history: chronological merge of both devices' messages.
	for _, d := range devs {
		for j := range 2 {
			if err := say(ctx, d, fmt.Sprintf("%s-%d", d.name, j), fmt.Sprintf("message %d from the %s", j, d.name)); err != nil {
				return err
			}
		}
	}
	// Personality model: weighted average of each device's contribution.
	for i, d := range devs {
		if err := contribute(ctx, d, []float64{0.2 + 0.3*float64(i), 0.9 - 0.2*float64(i)}, float64(10*(i+1))); err != nil {
			return err
		}
	}
	// Embeddings: the same memory embedded on two devices from different
	// text: one winner, marked stale for re-embedding.
	for i, d := range []*device{phone, tablet} {
		e := conflict.Embedding{Vector: []float32{1, float32(i), 0.5}, ContentHash: sha256.Sum256([]byte(fmt.Sprintf("memory text v%d", i))), Model: "demo-embed"}
		b, err := e.Encode()
		if err != nil {
			return err
		}
		if err := d.node.Put(ctx, federation.CollectionEmbeddings, "memory-1", b); err != nil {
			return err
		}
	}
	// Analytics: append-only union of events.
	for _, d := range devs {
		if err := d.node.Update(ctx, func(tx *federation.Tx) error {
			old, err := tx.Get(federation.CollectionAnalytics, "sessions")
			if err != nil && !errors.Is(err, federation.ErrNotFound) {
				return err
			}
			v, err := conflict.EventsAppend(old, []byte("session on the "+d.name))
			if err != nil {
				return err
			}
			return tx.Put(federation.CollectionAnalytics, "sessions", v)
		}); err != nil {
			return err
		}
	}
	// Media: content-addressed, never merged: last writer wins.
	if err := phone.node.Put(ctx, federation.CollectionMedia, "avatar", []byte("avatar taken on the phone")); err != nil {
		return err
	}
	if err := laptop.node.Put(ctx, federation.CollectionMedia, "avatar", []byte("avatar uploaded on the laptop")); err != nil {
		return err
	}
	// Cache: local only, never leaves the device.
	if err := tablet.node.Put(ctx, federation.CollectionCache, "scratch", []byte("tablet-only scratch space")); err != nil {
		return err
	}
	// A decision the user must take: concurrent, left to the host.
	if err := phone.node.Put(ctx, decisions, "holiday", []byte("go to the mountains")); err != nil {
		return err
	}
	return laptop.node.Put(ctx, decisions, "holiday", []byte("go to the seaside"))
}

func profileSet(ctx context.Context, d *device, field, value string) error {
	return d.node.Update(ctx, func(tx *federation.Tx) error {
		old, err := tx.Get(federation.CollectionProfile, "me")
		if err != nil && !errors.Is(err, federation.ErrNotFound) {
			return err
		}
		ts, err := d.node.Now()
		if err != nil {
			return err
		}
		v, err := conflict.ProfileSet(old, field, value, ts, d.node.DeviceID())
		if err != nil {
			return err
		}
		return tx.Put(federation.CollectionProfile, "me", v)
	})
}

func say(ctx context.Context, d *device, id, text string) error {
	return d.node.Update(ctx, func(tx *federation.Tx) error {
		log := &crdt.Log{}
		if old, err := tx.Get(federation.CollectionConversation, "chat-1"); err == nil {
			if log, err = crdt.DecodeLog(old); err != nil {
				return err
			}
		} else if !errors.Is(err, federation.ErrNotFound) {
			return err
		}
		ts, err := d.node.Now()
		if err != nil {
			return err
		}
		if err := log.Append(crdt.Message{ID: id, Time: ts, Device: d.node.DeviceID(), Body: []byte(text)}); err != nil {
			return err
		}
		return tx.Put(federation.CollectionConversation, "chat-1", log.Encode())
	})
}

func contribute(ctx context.Context, d *device, traits []float64, weight float64) error {
	return d.node.Update(ctx, func(tx *federation.Tx) error {
		avg := crdt.NewAverage(len(traits))
		if err := avg.Add(d.node.DeviceID(), traits, weight); err != nil {
			return err
		}
		return tx.Put(federation.CollectionPersonality, "traits", avg.Encode())
	})
}

// waitConverged waits until all devices hold the same changes (equal
// version vectors) and, when settled is set, no queued conflict, no stale
// embedding and equal Merkle roots: identical records.
func waitConverged(ctx context.Context, devs []*device, settled bool) error {
	for {
		if ok, err := converged(ctx, devs, settled); err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			var state []string
			for _, d := range devs {
				st, _ := d.node.Stats(context.WithoutCancel(ctx))
				state = append(state, fmt.Sprintf("%s %v", d.name, st.VersionVector))
			}
			return fmt.Errorf("devices did not converge (%s): %w", strings.Join(state, "; "), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func converged(ctx context.Context, devs []*device, settled bool) (bool, error) {
	first, err := devs[0].node.Stats(ctx)
	if err != nil {
		return false, err
	}
	roots := devs[0].node.Roots()
	for _, d := range devs {
		st, err := d.node.Stats(ctx)
		if err != nil {
			return false, err
		}
		if st.VersionVector.Compare(first.VersionVector) != 0 {
			return false, nil
		}
		// Until the user settles the queued decision, each device keeps its
		// own version of it, so roots agree only once it is settled.
		if settled && !sameRoots(roots, d.node.Roots()) {
			return false, nil
		}
		if settled {
			cs, err := d.node.Conflicts(ctx)
			if err != nil || len(cs) > 0 {
				return false, err
			}
			if stale, err := conflict.NeedsReembed(get(ctx, d, federation.CollectionEmbeddings, "memory-1")); err != nil || stale {
				return false, err
			}
		}
	}
	return true, nil
}

func sameRoots(a, b map[string]federation.Digest) bool {
	if len(a) != len(b) {
		return false
	}
	for c, r := range a {
		if b[c] != r {
			return false
		}
	}
	return true
}

// resolveDecision shows the queued conflict and resolves it on the tablet.
func resolveDecision(ctx context.Context, devs []*device) error {
	var cs []federation.ConflictInfo
	for len(cs) == 0 {
		var err error
		if cs, err = devs[0].node.Conflicts(ctx); err != nil {
			return err
		}
		if len(cs) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	c := cs[0]
	fmt.Printf("   conflict %s on %s/%s: ours %q, theirs %q\n", c.ID, c.Collection, c.Key, c.Ours.Value, c.Theirs.Value)
	choice := "mountains in June, seaside in August"
	fmt.Printf("   the user resolves it on the phone: %q\n", choice)
	return devs[0].node.Resolve(ctx, c.ID, federation.Resolution{Value: []byte(choice)})
}

// summary prints what every device holds and the convergence line.
func summary(ctx context.Context, devs []*device) error {
	step("5. summary")
	fmt.Printf("   %-8s %s\n", "device", "what it holds after sync")
	for _, d := range devs {
		name, _, _ := conflict.ProfileGet(get(ctx, d, federation.CollectionProfile, "me"), "name")
		city, _, _ := conflict.ProfileGet(get(ctx, d, federation.CollectionProfile, "me"), "city")
		mood, _, _ := conflict.ProfileGet(get(ctx, d, federation.CollectionProfile, "me"), "mood")
		log, _ := crdt.DecodeLog(get(ctx, d, federation.CollectionConversation, "chat-1"))
		avg, _ := crdt.DecodeAverage(get(ctx, d, federation.CollectionPersonality, "traits"))
		stale, _ := conflict.NeedsReembed(get(ctx, d, federation.CollectionEmbeddings, "memory-1"))
		events, _ := conflict.Events(get(ctx, d, federation.CollectionAnalytics, "sessions"))
		st, err := d.node.Stats(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("   %-8s profile name=%s city=%s mood=%s\n", d.name, name, city, mood)
		if log != nil && avg != nil {
			mean, w := avg.Value()
			fmt.Printf("   %-8s conversation %d messages, personality %.3f (weight %.0f)\n", "", log.Len(), mean, w)
		}
		fmt.Printf("   %-8s embedding stale=%v, %d analytics events, avatar %q, decision %q\n", "", stale, len(events),
			get(ctx, d, federation.CollectionMedia, "avatar"), get(ctx, d, decisions, "holiday"))
		_, cacheErr := d.node.Get(ctx, federation.CollectionCache, "scratch")
		fmt.Printf("   %-8s cache entry here: %v; %d records in store\n", "", cacheErr == nil, st.Store.Records)
	}
	records, root, err := meshRoot(ctx, devs[0])
	if err != nil {
		return err
	}
	fmt.Printf("converged: %d devices, %d records, root %s\n", len(devs), records, root)
	return nil
}

func get(ctx context.Context, d *device, coll, key string) []byte {
	v, _ := d.node.Get(ctx, coll, key)
	return v
}

// meshRoot counts the synced records of a device and folds its collection
// roots into one digest.
func meshRoot(ctx context.Context, d *device) (int, string, error) {
	roots := d.node.Roots()
	names := make([]string, 0, len(roots))
	for c := range roots {
		names = append(names, c)
	}
	sort.Strings(names)
	h := sha256.New()
	records := 0
	for _, c := range names {
		r := roots[c]
		h.Write([]byte(c))
		h.Write(r[:])
		err := d.node.Scan(ctx, c, federation.KeyRange{}, func(federation.Record) error { records++; return nil })
		if err != nil {
			return 0, "", err
		}
	}
	return records, hex.EncodeToString(h.Sum(nil)), nil
}
