// Package registry is the device registry of a mesh: which devices belong
// to the user, how far each is trusted, and the mesh secret only they can
// read. It also holds the pieces of pairing that do not need a network:
// invitations with one-time codes and the short authentication string.
//
// # Trust
//
// A device is pending (known, awaiting approval), trusted, owner (a trusted
// device that may also grant owner) or revoked. Revoked is terminal. Only
// trusted and owner devices sync (see Authorizer, a core.Authorizer over
// the registry table) and make registry operations.
//
// # Signed operations
//
// Every change is an Op: add (also used to approve a pending device by
// adding it again as trusted), revoke, rename, set-policy and
// rotate-secret. An operation carries its author's public key (the author's
// device id is its SHA-256), the author's HLC timestamp, the hash of the
// author's previous operation (Prev), and an Ed25519 signature by the
// author over "devicemesh/registry-op/v1\x00" followed by the body below.
// Its identity (OpHash) is the SHA-256 of those signed bytes.
//
// Wire encoding (Op.Marshal, UnmarshalOp), integers big-endian:
//
//	version     1 byte (1)
//	kind        1 byte (1 add, 2 revoke, 3 rename, 4 set-policy, 5 rotate-secret)
//	author key  32 bytes (Ed25519)
//	at          8 bytes (core.Timestamp)
//	prev        32 bytes (OpHash of the author's previous op, or zeros)
//	target      32 bytes (device id; zeros for rotate-secret)
//	then by kind:
//	  add:           target key 32 | trust 1 | type 1 | name len 2 | name | policy len 2 | policy
//	  revoke:        cutoff 32 (OpHash of the target's last acknowledged op, or zeros)
//	  rename:        name len 2 | name
//	  set-policy:    policy len 2 | policy
//	  rotate-secret: generation 8 | count 1 | count × (device id 32 | sealed box 80)
//	signature   length 1 | bytes (64 for Ed25519)
//
// Names are at most MaxNameLen bytes of UTF-8, policies MaxPolicyLen bytes
// of opaque data (JSON by convention); UnmarshalOp accepts only canonical
// encodings.
//
// Verify is the check for an operation arriving now: it refuses unsigned
// and forged operations and operations whose author may not make them,
// with errors wrapping core.ErrUnauthorized. State has no clock, so the
// receiver first passes op.At to its core.HLC (Update), which refuses a
// timestamp too far ahead (core.ErrClockDrift): otherwise a device could
// win every last-writer-wins field by dating its operations in the future.
//
// # Convergence
//
// State is a pure state machine (no I/O, no clock) whose registry is a
// deterministic function of the set of operations it holds: replicas that
// applied the same operations, in any order, with duplicates, are
// identical. Every correctly signed operation is kept, and replay decides
// its effect: operations run in (timestamp, author, hash) order and each
// takes effect only if its author may make it at that point. So renames
// and policy changes are last-writer-wins by (timestamp, author), trust
// only rises through adds, and an add of a device that is revoked at that
// point is void.
//
// Revocation is final and wins over concurrent adds: once a revocation of
// X takes effect, X is revoked whatever adds are ordered after it, and
// X's own operations count only if they lie on X's chain of operations
// (through Prev) ending at the revocation's Cutoff, the last operation of
// X its revoker had seen; every other operation of X is void wherever its
// timestamp places it, so a stolen key cannot backdate changes. Replay
// settles revocations one at a time (an owner's before a trusted device's,
// then the earliest) and starts over after each. A consequence: a
// revocation made by a device that is itself revoked without acknowledging
// it is void, so a thief racing an owner cannot use a stolen device to
// lock the user's other devices out. (Two devices of the same level
// revoking each other concurrently are settled by timestamp, which the
// thief chooses: keep at least one owner device.)
//
// # Mesh secret
//
// A rotate-secret operation installs a new generation of the 32-byte mesh
// secret, sealed (NaCl anonymous box, X25519) to the Noise key of every
// trusted and owner device (identity.NoisePublicFor): a revoked device
// holds no copy of a later generation. After a revocation, or whenever
// NeedsRotation reports that the holders of the current generation differ
// from the trusted devices, a trusted device issues NewRotation.
//
// # Persistence
//
// Store is the device_registry table (Schema; EnsureSchema), in memory
// (NewMemory) or over a libSQL *sql.DB (NewSQL); Save writes a State into
// it, Touch records last-seen times. The operations themselves persist as
// their Marshal encodings wherever the host keeps them, and a State is
// rebuilt with NewState(genesis) and ApplyAll.
//
// # Pairing
//
// NewInvitation makes a one-time invitation: a ten-character code (nine
// random base32 characters and a Luhn mod 32 check character, shown as
// "K7QDA-M2XWP") and a QR-ready string carrying the issuer's key,
// addresses, the code and the expiry (ParseInvitation reads it). The
// issuer's Tracker accepts each code once, before expiry, and burns its
// invitations after a few wrong guesses. Invitation.Key derives a pairing
// pre-shared key from it. SAS turns a handshake transcript hash into six
// digits that both devices display; the user approves only when they match.
package registry
