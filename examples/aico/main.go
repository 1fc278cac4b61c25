// Command aico shows how an AI companion's backend embeds the SDK: the
// collections it keeps for each kind of data, the policy and resolver of
// each, the re-embed hook that keeps vector embeddings true to their
// content, and the manual conflict queue as the companion shows it to its
// user.
//
//	go run ./examples/aico
//
// Two of the user's devices (a phone and a laptop) run in this process,
// each with its own encrypted libSQL file, talking QUIC on loopback. They
// pair, then spend a while apart (PausePeer) while the companion keeps
// working on both, and meet again: every kind of data merges by its
// collection's rule, and the one decision the SDK cannot take is queued
// for the user.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
)

// The companion's own collections, beside the SDK's standard ones
// (profile, conversations, personality, embeddings, analytics, media,
// cache).
const (
	// reminders are the user's reminders: a concurrent edit of one
	// reminder on two devices is the user's call, not the SDK's.
	reminders = "reminders"
	// settings are the companion's settings: last writer wins.
	settings = "settings"
)

// policies is the companion's policy table: the SDK's defaults for the
// standard collections (see federation.DefaultPolicies: profile and
// personality high and immediate, conversations medium, embeddings on
// demand, analytics batched, media thumbnails first, cache never synced),
// and its own collections.
func policies() map[string]federation.Policy {
	p := federation.DefaultPolicies()
	// The companion recalls memories on every device, offline too: its
	// embeddings travel whole (the default leaves them on demand, for
	// devices that fetch what they need with Node.Fetch).
	emb := p[federation.CollectionEmbeddings]
	emb.Mode = federation.ModeImmediate
	p[federation.CollectionEmbeddings] = emb
	// Usage analytics ship in one batch per interval (periodic); this
	// demo's interval is short so that it ends quickly.
	an := p[federation.CollectionAnalytics]
	an.Interval = 2 * time.Second
	p[federation.CollectionAnalytics] = an
	p[reminders] = federation.Policy{Priority: federation.PriorityHigh, Mode: federation.ModeImmediate, Resolver: conflict.Manual{}}
	p[settings] = federation.Policy{Priority: federation.PriorityMedium, Mode: federation.ModeImmediate, Resolver: conflict.LWW{}}
	return p
}

// embed is the companion's embedding model (a stand-in: a deterministic
// vector from the text's hash).
func embed(text string) conflict.Embedding {
	h := sha256.Sum256([]byte(text))
	v := make([]float32, 4)
	for i := range v {
		v[i] = float32(binary.BigEndian.Uint16(h[2*i:])) / math.MaxUint16
	}
	return conflict.Embedding{Vector: v, ContentHash: h, Model: "companion-embed-v1"}
}

// reembed is the SDK's re-embed hook: a merge of two different contents
// for one memory leaves the winner's vector marked stale, and the node
// asks the model for a fresh one. Here the memory's text is found by its
// key in the companion's own store (a map).
func reembed(memories map[string]string) federation.ReembedFunc {
	return func(_ context.Context, _, key string, stale conflict.Embedding) ([]float32, error) {
		return embed(memories[key]).Vector, nil
	}
}

type device struct {
	name string
	node *federation.Node
}

func open(ctx context.Context, dir, name string, memories map[string]string) (*device, error) {
	key := make([]byte, 32) // a real host keeps it in the OS keychain
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	n, err := federation.New(federation.Config{
		Dir:               dir + "/" + name,
		Device:            federation.DeviceConfig{Name: name, Type: name},
		Encryption:        federation.EncryptionConfig{Key: key},
		Network:           federation.NetworkConfig{ListenAddr: "127.0.0.1:0"},
		Collections:       policies(),
		StrictCollections: true, // a typo in a collection name is an error
		Reembed:           reembed(memories),
	})
	if err != nil {
		return nil, err
	}
	if err := n.Start(ctx); err != nil {
		_ = n.Close()
		return nil, err
	}
	return &device{name: name, node: n}, nil
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "aico:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "federation-aico-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	memories := map[string]string{}
	phone, err := open(ctx, dir, "phone", memories)
	if err != nil {
		return err
	}
	defer phone.node.Close()
	laptop, err := open(ctx, dir, "laptop", memories)
	if err != nil {
		return err
	}
	defer laptop.node.Close()
	if err := pair(ctx, phone, laptop); err != nil {
		return err
	}
	fmt.Println("paired the phone and the laptop")

	// The companion shows queued conflicts as they arrive.
	queue := phone.node.Subscribe(federation.SubscribeOptions{})
	defer queue.Close()

	// Apart for a while: both devices keep working.
	if _, err := phone.node.PausePeer(ctx, laptop.node.DeviceID()); err != nil {
		return err
	}
	if err := apart(ctx, phone, laptop, memories); err != nil {
		return err
	}
	fmt.Println("worked apart on both devices; meeting again")
	if err := phone.node.ResumePeer(ctx, laptop.node.DeviceID()); err != nil {
		return err
	}

	// The user's decision, from the queue.
	c, err := nextConflict(ctx, phone, queue)
	if err != nil {
		return err
	}
	fmt.Printf("conflict in %s/%s for the user:\n  this phone: %q\n  the laptop: %q\n", c.Collection, c.Key, c.Ours.Value, c.Theirs.Value)
	choice := []byte("dentist, Tuesday 10:00 (moved)") // the user picks, or writes a merge
	if err := phone.node.Resolve(ctx, c.ID, federation.Resolution{Value: choice}); err != nil {
		return err
	}
	fmt.Printf("the user chose %q\n", choice)
	if err := converged(ctx, phone, laptop); err != nil {
		return err
	}
	return show(ctx, laptop)
}

// pair adds the laptop to the phone's mesh (see examples/pairing).
func pair(ctx context.Context, host, joiner *device) error {
	sas := make(chan string, 1)
	inv, err := host.node.Invite(ctx, federation.InviteOptions{Approve: func(ctx context.Context, r federation.PairRequest) (bool, error) {
		return r.SAS == <-sas, nil
	}})
	if err != nil {
		return err
	}
	_, err = joiner.node.Join(ctx, inv.QR, federation.JoinOptions{Show: func(r federation.PairRequest) { sas <- r.SAS }})
	return err
}

// apart is what the companion writes on each device while they are apart.
func apart(ctx context.Context, phone, laptop *device, memories map[string]string) error {
	steps := []func() error{
		// The profile: different fields on each device both survive.
		func() error { return phone.node.Profile("me").Set(ctx, "name", "Anna") },
		func() error { return laptop.node.Profile("me").Set(ctx, "timezone", "Europe/Paris") },
		// The conversation: both devices' messages, in time order.
		func() error {
			return phone.node.Conversation("today").Append(ctx, "p1", []byte("user: remind me of the dentist"))
		},
		func() error {
			return laptop.node.Conversation("today").Append(ctx, "l1", []byte("companion: your week looks busy"))
		},
		// The personality model: each device's observations, weighted.
		func() error { return phone.node.Personality("traits").Contribute(ctx, []float64{0.9, 0.3}, 5) },
		func() error { return laptop.node.Personality("traits").Contribute(ctx, []float64{0.7, 0.5}, 15) },
		// A memory embedded on both devices from different texts: one
		// wins, marked stale, and the re-embed hook refreshes it.
		func() error {
			memories["memory-1"] = "Anna likes hiking in the Alps"
			return phone.node.Embedding("memory-1").Set(ctx, embed("Anna likes hiking"))
		},
		func() error { return laptop.node.Embedding("memory-1").Set(ctx, embed("Anna likes the Alps")) },
		// Analytics: the union of both devices' events.
		func() error {
			return phone.node.Analytics("usage").Record(ctx, []byte(`{"id":"p-1","event":"voice-chat"}`))
		},
		func() error {
			return laptop.node.Analytics("usage").Record(ctx, []byte(`{"id":"l-1","event":"typed-chat"}`))
		},
		// Settings: last writer wins.
		func() error { return phone.node.Put(ctx, settings, "voice", []byte("warm")) },
		// A reminder edited on both: queued for the user.
		func() error { return phone.node.Put(ctx, reminders, "dentist", []byte("dentist, Tuesday 10:00")) },
		func() error { return laptop.node.Put(ctx, reminders, "dentist", []byte("dentist, Wednesday 9:00")) },
		// Cache: never leaves the device.
		func() error {
			return phone.node.Put(ctx, federation.CollectionCache, "tts-warmup", []byte("phone only"))
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

func nextConflict(ctx context.Context, d *device, sub *federation.Subscription) (federation.ConflictInfo, error) {
	for {
		select {
		case e := <-sub.C:
			if e.Kind != federation.EventConflict {
				continue
			}
			cs, err := d.node.Conflicts(ctx)
			if err != nil {
				return federation.ConflictInfo{}, err
			}
			for _, c := range cs {
				if c.ID == e.ConflictID {
					return c, nil
				}
			}
		case <-ctx.Done():
			return federation.ConflictInfo{}, fmt.Errorf("no conflict reached the queue: %w", ctx.Err())
		}
	}
}

// converged waits until both devices hold the same records and no
// conflict or stale embedding is left.
func converged(ctx context.Context, a, b *device) error {
	for {
		ca, _ := a.node.Conflicts(ctx)
		cb, _ := b.node.Conflicts(ctx)
		e, err := b.node.Embedding("memory-1").Get(ctx)
		if err == nil && len(ca)+len(cb) == 0 && !e.Stale && fmt.Sprint(a.node.Roots()) == fmt.Sprint(b.node.Roots()) {
			return nil
		}
		select {
		case <-ctx.Done():
			var cs []string
			for _, c := range append(ca, cb...) {
				cs = append(cs, fmt.Sprintf("%s/%s %q (%v) vs %q (%v)", c.Collection, c.Key, c.Ours.Value, c.Ours.Context, c.Theirs.Value, c.Theirs.Context))
			}
			return fmt.Errorf("the devices did not converge (conflicts %v, embedding stale %v %v, roots %v vs %v): %w", cs, e.Stale, err, a.node.Roots(), b.node.Roots(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// show prints what the laptop holds after the merge.
func show(ctx context.Context, d *device) error {
	fields, err := d.node.Profile("me").Fields(ctx)
	if err != nil {
		return err
	}
	msgs, err := d.node.Conversation("today").Messages(ctx)
	if err != nil {
		return err
	}
	mean, weight, err := d.node.Personality("traits").Value(ctx)
	if err != nil {
		return err
	}
	mem, err := d.node.Embedding("memory-1").Get(ctx)
	if err != nil {
		return err
	}
	usage, err := d.node.Analytics("usage").Events(ctx)
	if err != nil {
		return err
	}
	reminder, err := d.node.Get(ctx, reminders, "dentist")
	if err != nil {
		return err
	}
	_, cacheErr := d.node.Get(ctx, federation.CollectionCache, "tts-warmup")
	fmt.Printf("on the %s after the merge:\n", d.name)
	fmt.Printf("  profile: name %s, timezone %s\n", fields["name"], fields["timezone"])
	fmt.Printf("  conversation: %d messages\n", len(msgs))
	fmt.Printf("  personality: %.2f (weight %.0f)\n", mean, weight)
	fmt.Printf("  memory-1: re-embedded for %q, stale %v\n", "Anna likes hiking in the Alps", mem.Stale)
	fmt.Printf("  usage events: %d\n", len(usage))
	fmt.Printf("  reminder: %s\n", reminder)
	fmt.Printf("  the phone's cache reached the laptop: %v\n", cacheErr == nil)
	return nil
}
