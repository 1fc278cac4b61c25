package pairing

import (
	"crypto/hmac"
	"crypto/sha256"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
)

// Domain-separation labels; each starts a different hash input.
const (
	labelKey     = "devicemesh/pairing/v1 key"
	labelJoiner  = "devicemesh/pairing/v1 joiner\x00"
	labelInviter = "devicemesh/pairing/v1 inviter\x00"
	labelCommit  = "devicemesh/pairing/v1 commit\x00"
	labelSAS     = "devicemesh/pairing/v1 sas\x00"
)

// maxBinding bounds the session binding (a Noise SHA-256 handshake hash is
// 32 bytes).
const maxBinding = 64

// binding is what ties one pairing run to one session: the session's
// handshake hash and both device ids.
type binding struct {
	hash            []byte
	joiner, inviter core.DeviceID
}

// append writes hash length 1 | hash | joiner id 32 | inviter id 32.
func (b binding) append(dst []byte) []byte {
	dst = append(dst, byte(len(b.hash)))
	dst = append(dst, b.hash...)
	dst = append(dst, b.joiner[:]...)
	return append(dst, b.inviter[:]...)
}

// codeKey derives the MAC key from the canonical pairing code (as returned
// by registry.ParseCode).
func codeKey(code string) []byte {
	m := hmac.New(sha256.New, []byte(labelKey))
	m.Write([]byte(code))
	return m.Sum(nil)
}

// joinerProof proves knowledge of the code, bound to this session, to the
// joiner's self-description and to its commitment.
func joinerProof(key []byte, b binding, h hello) [macSize]byte {
	msg := b.append([]byte(labelJoiner))
	msg = appendDevice(msg, h.typ, h.name)
	msg = append(msg, h.commit[:]...)
	return mac(key, msg)
}

// inviterProof proves the same for the inviter, covering the joiner's
// commitment and the inviter's nonce and self-description.
func inviterProof(key []byte, b binding, commit [digestSize]byte, c challenge) [macSize]byte {
	msg := b.append([]byte(labelInviter))
	msg = append(msg, commit[:]...)
	msg = appendDevice(msg, c.typ, c.name)
	msg = append(msg, c.nonce[:]...)
	return mac(key, msg)
}

func mac(key, msg []byte) [macSize]byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	var out [macSize]byte
	m.Sum(out[:0])
	return out
}

// commitment hides the joiner's nonce until the inviter has chosen its own.
func commitment(nonce [nonceSize]byte) [digestSize]byte {
	return sha256.Sum256(append([]byte(labelCommit), nonce[:]...))
}

// sas is the short authentication string both users compare: six digits
// from the session binding and both nonces. Each nonce is fixed before its
// owner sees the other's, so a man in the middle cannot steer the two
// values it causes to be shown towards each other.
func sas(b binding, joinerNonce, inviterNonce [nonceSize]byte) string {
	msg := b.append([]byte(labelSAS))
	msg = append(msg, joinerNonce[:]...)
	msg = append(msg, inviterNonce[:]...)
	sum := sha256.Sum256(msg)
	return registry.SAS(sum[:])
}
