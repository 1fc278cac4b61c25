package discovery

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"io"
	"strings"
	"time"

	"golang.org/x/crypto/hkdf"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
)

// DefaultPeriod is the rotation period of derived names when a mechanism's
// configuration leaves it zero: every name, record key and DHT target
// changes this often.
const DefaultPeriod = time.Hour

// hkdfSalt separates discovery keys from every other use of the mesh secret.
const hkdfSalt = "devicemesh/discovery/v1"

// Epoch numbers the rotation period holding t: the count of whole periods
// since the Unix epoch. A period of zero or less means DefaultPeriod. Times
// before 1970 map to epoch 0.
func Epoch(t time.Time, period time.Duration) uint64 {
	if period <= 0 {
		period = DefaultPeriod
	}
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms / period.Milliseconds())
}

// EpochStart returns when epoch e begins.
func EpochStart(e uint64, period time.Duration) time.Time {
	if period <= 0 {
		period = DefaultPeriod
	}
	return time.UnixMilli(int64(e) * period.Milliseconds())
}

// Epochs returns the epochs that a reader at t should look in when clocks
// may differ by up to slack: those of t-slack through t+slack, in order,
// each once. An announcer uses Epoch(t) alone.
func Epochs(t time.Time, period, slack time.Duration) []uint64 {
	if slack < 0 {
		slack = -slack
	}
	lo, hi := Epoch(t.Add(-slack), period), Epoch(t.Add(slack), period)
	out := make([]uint64, 0, hi-lo+1)
	for e := lo; e <= hi; e++ {
		out = append(out, e)
	}
	return out
}

// Label says what a derived value is for. Values derived under different
// labels are independent.
type Label struct {
	// Purpose names the mechanism and use, for example "mdns/service" or
	// "dht/target". Mechanisms choose distinct purposes.
	Purpose string
	// Epoch is the rotation period the value belongs to (0 for values that
	// do not rotate, such as a sealing key).
	Epoch uint64
	// Device, when not zero, makes the value specific to one device (a DHT
	// target per device, say); members compute it for every trusted device.
	Device core.DeviceID
}

// Derive fills out with key material derived from the mesh secret for l:
// HKDF-SHA256 with the secret key as input, salt "devicemesh/discovery/v1"
// and info = purpose 0x00 generation (8) epoch (8) device (32), integers
// big endian. Anyone without the secret's key sees independent random bytes.
func Derive(sec registry.Secret, l Label, out []byte) {
	info := make([]byte, 0, len(l.Purpose)+1+8+8+32)
	info = append(info, l.Purpose...)
	info = append(info, 0)
	info = binary.BigEndian.AppendUint64(info, sec.Generation)
	info = binary.BigEndian.AppendUint64(info, l.Epoch)
	info = append(info, l.Device[:]...)
	r := hkdf.New(sha256.New, sec.Key[:], []byte(hkdfSalt), info)
	if _, err := io.ReadFull(r, out); err != nil {
		// HKDF-SHA256 yields up to 8160 bytes; asking for more is a bug.
		panic("discovery: derive: " + err.Error())
	}
}

// nameEncoding spells derived names in lowercase letters and digits 2-7,
// valid in DNS labels and service names.
var nameEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NameLen is the length of the names Name returns (80 bits, 16 characters).
const NameLen = 16

// Name returns a 16-character name (lowercase a-z and 2-7) derived for l,
// starting with a letter so it is a valid DNS label and mDNS service name.
func Name(sec registry.Secret, l Label) string {
	var b [10]byte
	Derive(sec, l, b[:])
	s := strings.ToLower(nameEncoding.EncodeToString(b[:]))
	if s[0] >= '2' && s[0] <= '7' {
		// Map a leading digit onto a letter: one bit of 80 lost.
		s = string(rune('q'+(s[0]-'2'))) + s[1:]
	}
	return s
}

// Target returns a 20-byte DHT target (or record key) derived for l.
func Target(sec registry.Secret, l Label) [20]byte {
	var t [20]byte
	Derive(sec, l, t[:])
	return t
}

// Key returns a 32-byte key derived for l, for example the seed of a
// per-epoch Ed25519 key pair that signs BEP 44 mutable items.
func Key(sec registry.Secret, l Label) [32]byte {
	var k [32]byte
	Derive(sec, l, k[:])
	return k
}

// CodeSecret returns the secret that a pairing code stands for on the
// local network: the inviting device announces itself under names and a
// sealing key derived from it, so that the new device, knowing nothing but
// the code the user typed, finds it. code must be canonical
// (registry.ParseCode). The code has 45 bits: it hides the announcement
// from the network for the few minutes an invitation lives, no longer.
func CodeSecret(code string) registry.Secret {
	var s registry.Secret
	r := hkdf.New(sha256.New, []byte(code), []byte(hkdfSalt+"/code"), nil)
	if _, err := io.ReadFull(r, s.Key[:]); err != nil {
		panic("discovery: code secret: " + err.Error())
	}
	return s
}
