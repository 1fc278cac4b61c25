package replica

import (
	"context"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

// TestForgedReplicaAnnouncementRefused: an announcement that does not hash
// to its replica id (claiming another device's replica, or malformed) is
// refused with its transaction and audited; a genuine one is learned.
func TestForgedReplicaAnnouncementRefused(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Config{})
	n := h.rep
	victim, _ := identity.Generate(nil)
	mallory, _ := identity.Generate(nil)
	nonce := make([]byte, replicaNonceLen)
	replica := replicaID(victim.DeviceID(), nonce)
	announce := func(dev core.DeviceID, nonce []byte) core.Record {
		v := append(append([]byte{replicaVersion}, dev[:]...), nonce...)
		return core.Record{Collection: ReplicasCollection, Key: hex.EncodeToString(replica[:]), Value: v, Origin: replica, Seq: 1}
	}
	for name, rec := range map[string]core.Record{
		"another device": announce(mallory.DeviceID(), nonce),
		"another nonce":  announce(victim.DeviceID(), []byte("0123456789abcdef")),
		"short":          {Collection: ReplicasCollection, Key: hex.EncodeToString(replica[:]), Value: []byte{replicaVersion}},
		"version":        {Collection: ReplicasCollection, Key: hex.EncodeToString(replica[:]), Value: append([]byte{9}, announce(victim.DeviceID(), nonce).Value[1:]...)},
	} {
		err := n.check(ctx, replica, []core.Record{rec})
		if !errors.Is(err, ErrBadReplica) || !errors.Is(err, core.ErrProtocol) {
			t.Fatalf("%s: %v", name, err)
		}
		if got := n.OriginDevice(replica); got != replica {
			t.Fatalf("%s: learned a forged mapping to %s", name, got.Short())
		}
	}
	if entries := h.audited(audit.KindRefusal); len(entries) != 4 {
		t.Fatalf("refusals not audited: %v", entries)
	}
	if err := n.check(ctx, replica, []core.Record{announce(victim.DeviceID(), nonce)}); err != nil {
		t.Fatalf("genuine announcement refused: %v", err)
	}
	if got := n.OriginDevice(replica); got != victim.DeviceID() {
		t.Fatalf("genuine announcement not learned: %s", got.Short())
	}
}
