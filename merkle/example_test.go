package merkle_test

import (
	"fmt"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/merkle"
)

// Two devices reconcile a collection: the laptop drives, the phone answers.
// In the SDK each request and response crosses the network as bytes.
func Example() {
	laptop, phone := merkle.New(), merkle.New()
	for i := 0; i < 1000; i++ {
		r := core.Record{Collection: "notes", Key: fmt.Sprintf("note-%d", i), Value: []byte("text")}
		laptop.Set(r.Key, merkle.RecordDigest(r))
		if i != 42 {
			phone.Set(r.Key, merkle.RecordDigest(r))
		}
	}
	edited := core.Record{Collection: "notes", Key: "note-7", Value: []byte("edited")}
	phone.Set(edited.Key, merkle.RecordDigest(edited))

	rec := merkle.NewReconciler(laptop, merkle.Config{Salt: 0x5eed})
	req := rec.Start()
	for req != nil {
		wire, _ := req.AppendBinary(nil) // laptop -> phone
		got, err := merkle.DecodeRequest(wire)
		if err != nil {
			panic(err)
		}
		resp, _ := phone.Respond(got)
		wire, _ = resp.AppendBinary(nil, got) // phone -> laptop
		back, err := merkle.DecodeResponse(wire, req)
		if err != nil {
			panic(err)
		}
		if req, err = rec.Next(back); err != nil {
			panic(err)
		}
	}
	d := rec.Diff()
	fmt.Println("only on the laptop:", d.LocalOnly)
	fmt.Println("changed:", d.Changed)
	fmt.Println("rounds:", rec.Stats().Rounds)
	// Output:
	// only on the laptop: [note-42]
	// changed: [note-7]
	// rounds: 1
}
