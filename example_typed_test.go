package federation_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log"
	"os"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
)

// exampleNode opens a node in a fresh directory (for the examples).
func exampleNode() (*federation.Node, func()) {
	dir, err := os.MkdirTemp("", "federation-example-")
	if err != nil {
		log.Fatal(err)
	}
	n, err := federation.New(federation.Config{Dir: dir, Device: federation.DeviceConfig{Name: "phone", Type: "phone"}})
	if err != nil {
		log.Fatal(err)
	}
	return n, func() { _ = n.Close(); _ = os.RemoveAll(dir) }
}

// A profile is a document of named fields, merged field by field across
// devices.
func ExampleNode_Profile() {
	ctx := context.Background()
	n, done := exampleNode()
	defer done()

	me := n.Profile("me")
	if err := me.Set(ctx, "name", "Anna"); err != nil {
		log.Fatal(err)
	}
	if err := me.Set(ctx, "languages", []string{"en", "fr"}); err != nil {
		log.Fatal(err)
	}
	var name string
	ok, err := me.Get(ctx, "name", &name)
	if err != nil {
		log.Fatal(err)
	}
	fields, err := me.Fields(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ok, name, string(fields["languages"]))
	// Output: true Anna ["en","fr"]
}

// A conversation is a log of messages, merged in chronological order.
func ExampleNode_Conversation() {
	ctx := context.Background()
	n, done := exampleNode()
	defer done()

	chat := n.Conversation("chat-1")
	if err := chat.Append(ctx, "m1", []byte("Hello!")); err != nil {
		log.Fatal(err)
	}
	if err := chat.Append(ctx, "m2", []byte("How was the hike?")); err != nil {
		log.Fatal(err)
	}
	if err := chat.Edit(ctx, "m2", []byte("How was the hike yesterday?")); err != nil {
		log.Fatal(err)
	}
	msgs, err := chat.Messages(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		fmt.Printf("%s: %s\n", m.ID, m.Body)
	}
	// Output:
	// m1: Hello!
	// m2: How was the hike yesterday?
}

// The personality model is the weighted mean of every device's samples.
func ExampleNode_Personality() {
	ctx := context.Background()
	n, done := exampleNode()
	defer done()

	traits := n.Personality("traits")
	if err := traits.Contribute(ctx, []float64{0.8, 0.2}, 1); err != nil {
		log.Fatal(err)
	}
	if err := traits.Contribute(ctx, []float64{0.2, 0.6}, 3); err != nil {
		log.Fatal(err)
	}
	mean, weight, err := traits.Value(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%.2f weight %.0f\n", mean, weight)
	// Output: [0.35 0.50] weight 4
}

// An embedding carries the hash of the content it embeds, so that devices
// can tell a duplicate from a different content.
func ExampleNode_Embedding() {
	ctx := context.Background()
	n, done := exampleNode()
	defer done()

	text := "Anna went hiking in the Alps"
	mem := n.Embedding("memory-42")
	if err := mem.Set(ctx, conflict.Embedding{Vector: []float32{0.1, 0.7, 0.2}, ContentHash: sha256.Sum256([]byte(text)), Model: "demo-embed-v1"}); err != nil {
		log.Fatal(err)
	}
	e, err := mem.Get(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Model, e.Vector, e.Stale)
	// Output: demo-embed-v1 [0.1 0.7 0.2] false
}

// Analytics events form an append-only set, the union of every device's.
func ExampleNode_Analytics() {
	ctx := context.Background()
	n, done := exampleNode()
	defer done()

	sessions := n.Analytics("sessions")
	if err := sessions.Record(ctx, []byte(`{"id":"s1","event":"app-opened"}`)); err != nil {
		log.Fatal(err)
	}
	if err := sessions.Record(ctx, []byte(`{"id":"s2","event":"chat-started"}`), []byte(`{"id":"s1","event":"app-opened"}`)); err != nil {
		log.Fatal(err)
	}
	events, err := sessions.Events(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range events {
		fmt.Println(string(e))
	}
	// Output:
	// {"id":"s1","event":"app-opened"}
	// {"id":"s2","event":"chat-started"}
}
