package relay_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/devicemesh/federation/relay"
)

// TestRelayAfterRotation: the phone revokes the tablet, so the mesh
// secret rotates; the phone and the laptop reattach to the relay under the
// new generation's credential (the relay sees a credential id it never saw
// before) and new pseudonyms, and keep syncing through it, direct paths
// still blocked.
func TestRelayAfterRotation(t *testing.T) {
	r := startRelay(t, "-debug")
	phone, fp := relayedNode(t, "phone", "quic://"+r.ready["udp"])
	laptop, fl := relayedNode(t, "laptop", "quic://"+r.ready["udp"])
	tablet, ft := relayedNode(t, "tablet", "quic://"+r.ready["udp"])
	pair(t, phone, laptop)
	pair(t, phone, tablet)
	sameSecret(t, phone, laptop, tablet)
	old, _ := phone.MeshSecret()
	for _, f := range []*filterConn{fp, fl, ft} {
		f.blocked.Store(true)
	}
	ctx := context.Background()
	if err := phone.Put(ctx, "notes", "before", []byte("1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "sync through the relay", func() bool { return holds(laptop, "notes", "before", "1") })

	if err := phone.RevokeDevice(ctx, tablet.DeviceID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "a new secret generation on the phone and the laptop", func() bool {
		a, errA := phone.MeshSecret()
		b, errB := laptop.MeshSecret()
		return errA == nil && errB == nil && a == b && a.Generation > old.Generation
	})
	secret, _ := phone.MeshSecret()
	newID := string(relay.NewCredential(secret.Key, secret.Generation).ID())
	if newID == string(relay.NewCredential(old.Key, old.Generation).ID()) {
		t.Fatal("the credential did not change with the secret")
	}
	eventually(t, 60*time.Second, "the devices reattach under the new credential", func() bool {
		log, _ := os.ReadFile(r.logPath)
		return strings.Count(string(log), "credential="+newID) >= 2
	})
	if err := laptop.Put(ctx, "notes", "after", []byte("2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "sync through the relay after the rotation", func() bool { return holds(phone, "notes", "after", "2") })
}
