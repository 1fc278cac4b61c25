package audit

import (
	"encoding/hex"

	"github.com/devicemesh/federation/core"
)

// Constructors for the common entries, so that every part of the SDK
// records the same fields under the same names. Append stamps the time.
// Their string arguments pass through Token, so an unusual collection name
// never makes an append fail.

// Token makes s fit a Field's Text: bytes outside printable ASCII (and
// spaces) become '_', and it is cut to MaxTextLen bytes.
func Token(s string) string {
	if len(s) > MaxTextLen {
		s = s[:MaxTextLen]
	}
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c > '~' {
			b[i] = '_'
		}
	}
	return string(b)
}

// SessionOpened records an established sync session with dev; transport
// names the path ("direct", "relay").
func SessionOpened(dev core.DeviceID, transport string) Entry {
	return Entry{Kind: KindSessionOpened, Device: dev, Detail: Detail{Text("transport", Token(transport))}}
}

// SessionClosed records the end of the session with dev and why
// ("done", "revoked", "error", ...).
func SessionClosed(dev core.DeviceID, reason string) Entry {
	return Entry{Kind: KindSessionClosed, Device: dev, Detail: Detail{Text("reason", Token(reason))}}
}

// BatchSent records a batch of changes sent to dev.
func BatchSent(dev core.DeviceID, collection string, txns, changes, bytes int64) Entry {
	return batch(KindBatchSent, dev, collection, txns, changes, bytes)
}

// BatchReceived records a batch of changes received from dev.
func BatchReceived(dev core.DeviceID, collection string, txns, changes, bytes int64) Entry {
	return batch(KindBatchReceived, dev, collection, txns, changes, bytes)
}

func batch(k Kind, dev core.DeviceID, collection string, txns, changes, bytes int64) Entry {
	return Entry{Kind: k, Device: dev, Detail: Detail{
		Num("bytes", bytes), Num("changes", changes), Text("collection", Token(collection)), Num("txns", txns),
	}}
}

// ConflictDetected records concurrent versions of a record in collection,
// caused by a change from dev. The key is not recorded: it may be personal.
func ConflictDetected(dev core.DeviceID, collection string) Entry {
	return Entry{Kind: KindConflictDetected, Device: dev, Detail: Detail{Text("collection", Token(collection))}}
}

// ConflictResolved records how a conflict in collection was settled
// (resolver name, or "manual").
func ConflictResolved(dev core.DeviceID, collection, resolver string) Entry {
	return Entry{Kind: KindConflictResolved, Device: dev, Detail: Detail{Text("collection", Token(collection)), Text("resolver", Token(resolver))}}
}

// Refusal records that dev (or a session, or a message from it) was
// refused, with a short reason code ("revoked", "unknown", "clock-drift").
func Refusal(dev core.DeviceID, reason string) Entry {
	return Entry{Kind: KindRefusal, Device: dev, Detail: Detail{Text("reason", Token(reason))}}
}

// Pairing records a pairing step with dev ("invited", "sas-shown",
// "approved", "rejected").
func Pairing(dev core.DeviceID, step string) Entry {
	return Entry{Kind: KindPairing, Device: dev, Detail: Detail{Text("step", Token(step))}}
}

// Restored records that dev's store was restored from a backup whose
// highest own signed head was backup (zero: none), and that its heads now
// belong to epoch (see SignedHead.Epoch).
func Restored(dev core.DeviceID, backup SignedHead, epoch uint64) Entry {
	return Entry{Kind: KindRestored, Device: dev, Detail: Detail{
		Num("epoch", int64(epoch)),
		Text("hash", hex.EncodeToString(backup.Head.Hash[:])),
		Num("prev_epoch", int64(backup.Epoch)),
		Num("seq", int64(backup.Head.Seq)),
	}}
}
