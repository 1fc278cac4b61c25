// Package pairing is the ceremony by which a new device joins a user's
// mesh: an already trusted device (the inviter) shows an invitation (a
// short code, or a QR-ready string carrying its key, addresses, the code
// and the expiry; see registry.NewInvitation); the new device (the joiner)
// connects, proves it holds the code, both devices show the same short
// authentication string (SAS), the inviter's user approves (and, if the
// host wants, the joiner's user confirms), and only then does the inviter
// hand over what the new device needs (the registry operations and the
// sealed mesh secret, opaque here).
//
// # Where it runs
//
// Pairing runs on one stream of a transport session that is authenticated
// (both devices proved their keys in the Noise handshake) but not trusted:
// the node admits an unknown device only to a pairing stream, only while
// an invitation is open, and sends it nothing else. The joiner opens the
// stream and calls Join; the inviter accepts it and calls Host. Both take
// the session (Session, implemented by *transport.Session) because every
// secret-dependent value is bound to its handshake hash
// (transport.Session.HandshakeHash), which both ends share and no other
// session has.
//
// # Why a man in the middle fails
//
// With the QR string the joiner knows the inviter's key, so Join refuses
// any other peer (ErrWrongInviter) before sending a byte. With a typed
// code, a device in the middle runs two sessions with two different
// handshake hashes:
//
//   - Not knowing the code, it cannot turn the joiner's proof (bound to its
//     session with the joiner) into one for its session with the inviter:
//     the inviter answers a wrong proof with one Refuse message and nothing
//     else, and counts it against the Tracker's limit on wrong codes.
//   - Knowing the code (it saw the screen), it can complete both runs, but
//     the two devices then show two SAS values, each derived from a
//     different handshake hash. They match with probability 1e-6: the SAS
//     also mixes a nonce from each side, and the joiner commits to its
//     nonce before it learns the inviter's, so the middle cannot choose
//     its own values after seeing the others' to make the strings agree
//     (however it ground its handshake keys). Users who compare refuse.
//
// A device that impersonates the inviter towards a joiner using a typed
// code receives a proof it could test code guesses against offline (the
// code has 45 bits); the invitation's short expiry, its single use and the
// SAS comparison bound what that gains. (A PAKE would remove it.)
//
// # Messages
//
// Every message is one frame of package internal/wire (type 1 byte,
// length 4 bytes big-endian, payload) on the pairing stream, in this
// order; the frame types are 0x30-0x3F (the sync protocol uses
// 0x10-0x16):
//
//	joiner  → inviter  Hello     0x30
//	inviter → joiner   Challenge 0x31   (only if the Hello's proof verified and the code was redeemed)
//	joiner  → inviter  Reveal    0x32
//	                   both compute and show the SAS; the inviter's user approves
//	joiner  → inviter  Verdict   0x33   (after Confirm, if any)
//	inviter → joiner   Welcome   0x34   (only if both users approved)
//	joiner  → inviter  Ack       0x35
//	either             Refuse    0x3F   (instead of any message above; ends the run)
//
// Payloads (D = the device-info field: type 1 byte, a registry.DeviceType
// 0-5 | name length 1 byte, at most registry.MaxNameLen | name, printable
// UTF-8):
//
//	Hello     version 1 (=1) | D | commitment 32 | proof 32      67-131 bytes
//	Challenge D | nonce 32 | proof 32                           66-130 bytes
//	Reveal    nonce 32                                          32 bytes
//	Verdict   1 = confirmed, 0 = declined                       1 byte
//	Welcome   registry length 4 | registry | secret length 4 | secret
//	Ack       SHA-256 of the Welcome payload                    32 bytes
//	Refuse    code 1: 1 wrong code, 2 code already used, 3 code expired,
//	          4 too many wrong codes, 5 declined by the user, 6 protocol
//	          violation, 7 aborted, 8 inviter could not prove the code
//
// A refusal carries its code only, never text. Every field is checked
// when decoded; a malformed message is core.ErrProtocol, never a panic.
//
// # Cryptography
//
// With B = hash length 1 | handshake hash | joiner id 32 | inviter id 32
// (the session binding) and code the canonical ten characters
// (registry.ParseCode):
//
//	K          = HMAC-SHA256(key "devicemesh/pairing/v1 key", code)
//	commitment = SHA-256("devicemesh/pairing/v1 commit\x00" | joiner nonce)
//	Hello      proof = HMAC-SHA256(K, "devicemesh/pairing/v1 joiner\x00" | B | D | commitment)
//	Challenge  proof = HMAC-SHA256(K, "devicemesh/pairing/v1 inviter\x00" | B | commitment | D | inviter nonce)
//	SAS        = registry.SAS(SHA-256("devicemesh/pairing/v1 sas\x00" | B | joiner nonce | inviter nonce))
//
// The inviter checks the Hello proof in constant time, then redeems the
// invitation with the Tracker (wrong, reused and expired codes fail there,
// with registry's sentinels) before sending the Challenge; it checks the
// Reveal against the commitment. The joiner checks the Challenge proof
// before revealing its nonce.
//
// # Concurrency
//
// Host and Join own their stream and close it before returning, so a
// context that ends unblocks them. While a user decides, each reads the
// other side's next message on a goroutine it waits for before returning,
// so a refusal from the other device withdraws the question (the context
// passed to Approve or Confirm ends).
package pairing
