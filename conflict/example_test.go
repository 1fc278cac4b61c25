package conflict_test

import (
	"context"
	"fmt"

	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
)

// Two devices edit different profile fields concurrently; each device
// resolves on its own and both keep both edits.
func ExampleFieldMerge() {
	phone, laptop := core.DeviceID{1}, core.DeviceID{2}
	base, _ := conflict.ProfileSet(nil, "name", "Ada", core.MakeTimestamp(1000, 0), phone)

	onPhone, _ := conflict.ProfileSet(base, "city", "London", core.MakeTimestamp(2000, 0), phone)
	onLaptop, _ := conflict.ProfileSet(base, "name", "Ada Lovelace", core.MakeTimestamp(2001, 0), laptop)

	res, err := conflict.Default(core.CollectionProfile).Resolve(context.Background(), core.Conflict{
		Collection: core.CollectionProfile, Key: "me",
		Local:  core.Record{Value: onPhone, Timestamp: core.MakeTimestamp(2000, 0), Origin: phone},
		Remote: core.Record{Value: onLaptop, Timestamp: core.MakeTimestamp(2001, 0), Origin: laptop},
	})
	if err != nil {
		panic(err)
	}
	name, _, _ := conflict.ProfileGet(res.Value, "name")
	city, _, _ := conflict.ProfileGet(res.Value, "city")
	fmt.Println(string(name), string(city))
	// Output: "Ada Lovelace" "London"
}

// A host overrides one collection and keeps the defaults elsewhere.
func ExampleRegistry() {
	reg := conflict.NewRegistry()
	if err := reg.Register(core.CollectionMedia, conflict.Manual{}); err != nil {
		panic(err)
	}
	fmt.Printf("%T %T\n", reg.Resolver(core.CollectionMedia), reg.Resolver(core.CollectionConversation))
	// Output: conflict.Manual conflict.Chronological
}
