package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// SAS returns the short authentication string for a pairing handshake: six
// digits, shown as "123 456", derived from the handshake's transcript hash
// (for Noise, the handshake hash h after the last message). Both devices
// display it and the user approves only when they match: a man in the
// middle runs two handshakes with different transcripts, so the strings
// differ, except with probability 1e-6 per attempt.
//
// Six digits resist an attacker only if it cannot try many transcripts
// for one pairing: the pairing protocol must commit both sides' ephemeral
// keys before either learns the other's (or mix the invitation Key into
// the handshake), otherwise a man in the middle can grind about a million
// ephemeral keys for a match.
func SAS(transcriptHash []byte) string {
	h := sha256.New()
	h.Write([]byte("devicemesh/sas/v1\x00"))
	h.Write(transcriptHash)
	sum := h.Sum(nil)
	n := binary.BigEndian.Uint64(sum[:8]) % 1_000_000 // bias below 2^-44
	return fmt.Sprintf("%03d %03d", n/1000, n%1000)
}

// cryptoRand reads crypto/rand, as the default source of invitation codes.
type cryptoRand struct{}

// Read fills p from crypto/rand.
func (cryptoRand) Read(p []byte) (int, error) { return rand.Read(p) }
