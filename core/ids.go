package core

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
)

// PublicKey is a device's long-term Ed25519 public key. The X25519 key used
// in Noise handshakes is derived from it (see package identity).
type PublicKey [32]byte

// String returns the key in hexadecimal.
func (k PublicKey) String() string { return hex.EncodeToString(k[:]) }

// DeviceID identifies a device: the SHA-256 of its public key.
type DeviceID [32]byte

// DeviceIDFromKey derives the id of the device that owns key.
func DeviceIDFromKey(key PublicKey) DeviceID { return DeviceID(sha256.Sum256(key[:])) }

// IsZero reports whether id is the zero value (no device).
func (id DeviceID) IsZero() bool { return id == DeviceID{} }

// Compare orders ids bytewise; it is the deterministic tie-break used across
// the SDK.
func (id DeviceID) Compare(o DeviceID) int {
	for i := range id {
		if id[i] != o[i] {
			if id[i] < o[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

const luhnAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// String returns the checkable text form: 52 base32 characters in four groups
// of 13, each followed by a Luhn mod 32 check character, shown in eight
// dash-separated blocks of seven (like Syncthing's device ids). Any single
// mistyped character fails ParseDeviceID.
func (id DeviceID) String() string {
	raw := idEncoding.EncodeToString(id[:]) // 52 characters
	var b strings.Builder
	withCheck := make([]byte, 0, 56)
	for g := 0; g < 4; g++ {
		group := raw[g*13 : (g+1)*13]
		withCheck = append(withCheck, group...)
		withCheck = append(withCheck, luhn32(group))
	}
	for i := 0; i < len(withCheck); i += 7 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.Write(withCheck[i : i+7])
	}
	return b.String()
}

// Short returns the first block of the text form, for display only.
func (id DeviceID) Short() string { return id.String()[:7] }

// MarshalText implements encoding.TextMarshaler.
func (id DeviceID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *DeviceID) UnmarshalText(b []byte) error {
	v, err := ParseDeviceID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseDeviceID parses the text form produced by DeviceID.String. Dashes and
// spaces are ignored and letters may be lower case; a wrong check character
// yields ErrInvalidDeviceID.
func ParseDeviceID(s string) (DeviceID, error) {
	var id DeviceID
	s = strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(s))
	if len(s) != 56 {
		return id, fmt.Errorf("%w: want 56 characters, got %d", ErrInvalidDeviceID, len(s))
	}
	raw := make([]byte, 0, 52)
	for g := 0; g < 4; g++ {
		group := s[g*14 : g*14+13]
		check := s[g*14+13]
		if strings.IndexByte(luhnAlphabet, check) < 0 || strings.Trim(group, luhnAlphabet) != "" {
			return id, fmt.Errorf("%w: character outside base32 alphabet", ErrInvalidDeviceID)
		}
		if luhn32(group) != check {
			return id, fmt.Errorf("%w: check character mismatch in group %d", ErrInvalidDeviceID, g+1)
		}
		raw = append(raw, group...)
	}
	b, err := idEncoding.DecodeString(string(raw))
	if err != nil || len(b) != 32 {
		return id, fmt.Errorf("%w: bad base32", ErrInvalidDeviceID)
	}
	copy(id[:], b)
	return id, nil
}

// luhn32 computes the Luhn mod N check character over the base32 alphabet.
func luhn32(s string) byte {
	const n = 32
	factor, sum := 1, 0
	for i := 0; i < len(s); i++ {
		code := strings.IndexByte(luhnAlphabet, s[i])
		addend := factor * code
		if factor == 2 {
			factor = 1
		} else {
			factor = 2
		}
		addend = addend/n + addend%n
		sum += addend
	}
	return luhnAlphabet[(n-sum%n)%n]
}
