// Package audit is the device's append-only, tamper-evident audit log.
//
// Every sync session, batch, conflict, registry operation, refusal and
// pairing step is recorded as an Entry: a sequence number, a time, a Kind,
// the device concerned and a Detail of a few small structured fields (counts,
// collection names, reason codes). Entries never carry payloads or personal
// text: Detail accepts only short identifier-like strings and integers.
//
// # Hash chain
//
// Entries form a hash chain. Entry n stores PrevHash, the Hash of entry n-1
// (32 zero bytes for entry 1), and
//
//	Hash = SHA-256(PrevHash || canonical encoding of the entry)
//
// The canonical encoding, in order, all integers big-endian:
//
//	"devicemesh/audit/v1" (19 bytes, domain separation)
//	seq        uint64
//	at         int64   Unix milliseconds
//	kind       uint8 length, then the Kind's String() bytes
//	device     32 bytes (all zero when the entry concerns no device)
//	detail     the Detail encoding:
//	           uint8 field count (at most MaxFields), then per field, in
//	           strictly ascending key order:
//	             uint8 key length, key bytes
//	             int64 Num
//	             uint8 text length, text bytes
//
// The Detail encoding is also what the libSQL backend stores in the detail
// column; DecodeDetail parses it and refuses anything malformed.
//
// Log.Verify walks the chain from entry 1 and reports the first row whose
// sequence number, PrevHash or Hash does not fit as a *TamperError wrapping
// ErrTampered, so an edited, deleted, inserted or reordered row is found
// and named. Removing rows from the end of the log leaves a shorter but
// valid chain; a Log detects that for the entries it appended itself, and
// callers that need it across restarts keep Head somewhere the attacker
// cannot rewrite and pass it to VerifyHead.
//
// # Backends
//
// A Log writes through a Backend: NewMemory for tests and hosts without
// disk, NewSQL for the libSQL table
//
//	audit(seq INTEGER PRIMARY KEY, at INTEGER, kind TEXT, device BLOB,
//	      detail BLOB, prev_hash BLOB, hash BLOB)
//
// (EnsureSchema creates it). A Log serializes its appends so that
// concurrent callers always extend one valid chain.
//
// # Anchoring
//
// Whoever can write the table can also rewrite a row, recompute every later
// hash and drop the newest rows: the chain then verifies. A SignedHead
// anchors the chain outside the file: the device signs (Ed25519, its
// device key) its epoch, entry count, newest Hash, the head it supersedes
// (Prev) and a time, encoded as
//
//	version uint8 (2) | public key 32 | epoch uint64 | seq uint64 |
//	hash 32 | prev seq uint64 | prev hash 32 | at int64 Unix ms |
//	signature 64
//
// with the signature over "devicemesh/audit-head/v2" and the bytes before
// it. The federation node replicates each device's latest head to its
// peers, who keep the highest (CompareSigned: epoch, then count, then
// hash) and never let a lower one replace it. Log.CheckHead and
// Log.VerifyHead tell whether the chain still contains a head; Extends
// tells a holder whether a newer head continues the one it held.
//
// # Epochs
//
// Restoring a backup drops the entries written after it, legitimately. A
// declared restore (federation.Restore leaves a file that the next open
// consumes) appends a KindRestored entry naming the backup's own head and
// the new epoch, max(epoch of the device's own held head, of its last
// restore) + 1, and signs the epoch's first head, whose Prev is the
// backup's head; the declaration is removed only once that head is
// committed. The epoch is inside the signature, so no one without the
// device key can raise it. Peers accept a newer epoch's head as extending
// any older head (auditing the restore) and keep it over every older-epoch
// head; the device does not check heads of older epochs against its chain.
// A head of its own epoch, or of a newer one, that its chain lacks is
// tampering, except when it was signed (At, device clock) before the
// latest KindRestored entry: then it belongs to a history the restore
// dropped. That happens after a second restore from a backup older than
// the first one: both restores start the same epoch number, the peers send
// back the head of the first one, and the device moves to the epoch after
// it and signs again.
//
// What remains possible:
//   - Entries after the newest head the peers (or the device's own store)
//     hold can be dropped or rewritten undetected; heads are signed every
//     few hundred entries, after some minutes, and at Close.
//   - The device key is in the same store. An attacker who can write the
//     file can sign heads over a rewritten history. The peers never lower
//     the count they hold, so a shorter or rewritten chain is still caught
//     when the device next gets the peers' head; but if the attacker also
//     removes the heads the device stores and the rewritten chain grows
//     past the peers' head before the device reconnects, the device's next
//     head replaces the peers' one. The peers see that it does not extend
//     the head they held and report a fork for that device; the device
//     itself learns nothing.
//   - A device that never reconnects cannot be checked against its peers,
//     only against its own stored head.
//   - A device restored from an older copy of its store without declaring
//     it lacks the entries written since the copy and is reported as
//     tampered: they are gone. A declared restore is not, and whoever can
//     write the device's folder can declare one (or forge a KindRestored
//     entry with a late time, together with the device key): that drops
//     the entries after an older copy without a tamper report, but the
//     peers see the new epoch and audit it as a restore of that device.
//   - Heads are told apart from a dropped history by the device's clock
//     (At against the restore entry's time): a clock set back across a
//     restore can make a pre-restore head look later, reported as
//     tampering (a false alarm, not a miss).
package audit
