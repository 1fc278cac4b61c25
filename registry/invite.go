package registry

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

// Pairing invitation limits.
const (
	// CodeLen is the length of a pairing code without its dash: nine
	// random base32 characters (45 bits) and one check character.
	CodeLen = 10
	// MaxInviteAddrs is the most addresses an invitation carries.
	MaxInviteAddrs = 8
	// MaxInviteAddrLen is the longest address in bytes.
	MaxInviteAddrLen = 255
	// MaxInviteLen is the longest invitation string ParseInvitation reads.
	MaxInviteLen = 4096
	// MaxOutstanding is the most invitations a Tracker holds at once.
	MaxOutstanding = 16
)

const (
	codeAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	invitePrefix = "devicemesh:pair?"
)

// Invitation lets a new device join the mesh: the issuing (already
// trusted) device shows its Code for typing or its String as a QR code; the
// new device uses it to reach the issuer and prove, with Key, that the
// user gave it the invitation. It is valid once, until Expires.
type Invitation struct {
	// Issuer is the inviting device; IssuerKey its pinned public key.
	Issuer    core.DeviceID
	IssuerKey core.PublicKey
	// Addrs are where the issuer can be dialled (may be empty on a LAN,
	// where discovery finds it).
	Addrs []string
	// Expires is when the invitation stops working (second precision).
	Expires time.Time
	// code is the one-time secret, CodeLen characters without dash.
	code string
}

// NewInvitation creates a one-time invitation to the mesh issued by
// issuer, valid until expires, with a secret read from r (nil:
// crypto/rand). Register it with a Tracker before showing it.
func NewInvitation(issuer *identity.Identity, addrs []string, expires time.Time, r io.Reader) (Invitation, error) {
	if r == nil {
		r = cryptoRand{}
	}
	if err := checkAddrs(addrs); err != nil {
		return Invitation{}, fmt.Errorf("new invitation: %w: %v", core.ErrInvalidArgument, err)
	}
	var raw [CodeLen - 1]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return Invitation{}, fmt.Errorf("new invitation: %w", err)
	}
	body := make([]byte, len(raw))
	for i, b := range raw {
		body[i] = codeAlphabet[b&31] // 256 is a multiple of 32: uniform
	}
	return Invitation{
		Issuer: issuer.DeviceID(), IssuerKey: issuer.PublicKey(),
		Addrs: append([]string(nil), addrs...), Expires: time.Unix(expires.Unix(), 0).UTC(),
		code: string(body) + string(codeCheck(string(body))),
	}, nil
}

// Code returns the short human code, such as "K7QDA-M2XWP": nine random
// characters and a check character that catches any single typo.
func (inv Invitation) Code() string {
	if len(inv.code) != CodeLen {
		return ""
	}
	return inv.code[:5] + "-" + inv.code[5:]
}

// Key returns the 32-byte pre-shared key both devices derive from the
// invitation, for the pairing handshake (for example Noise's psk).
func (inv Invitation) Key() [32]byte {
	h := sha256.New()
	h.Write([]byte("devicemesh/pairing-psk/v1\x00"))
	h.Write(inv.Issuer[:])
	h.Write([]byte(inv.code))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// String returns the QR-ready form, which carries the issuer's key, its
// addresses, the one-time code and the expiry:
//
//	devicemesh:pair?a=ADDR&a=ADDR&c=CODE&e=UNIXSECONDS&k=KEY&v=1
//
// (KEY in unpadded base64url; parameters URL-encoded, sorted by name).
func (inv Invitation) String() string {
	v := url.Values{
		"v": {"1"},
		"k": {base64.RawURLEncoding.EncodeToString(inv.IssuerKey[:])},
		"c": {inv.code},
		"e": {strconv.FormatInt(inv.Expires.Unix(), 10)},
	}
	if len(inv.Addrs) > 0 {
		v["a"] = inv.Addrs
	}
	return invitePrefix + v.Encode()
}

// GoString hides the code, so that %#v in a log does not leak it.
func (inv Invitation) GoString() string {
	return fmt.Sprintf("registry.Invitation{Issuer: %s, Expires: %s}", inv.Issuer.Short(), inv.Expires.Format(time.RFC3339))
}

// ParseInvitation parses the String form (as read from a QR code). It
// refuses anything malformed, oversized or with a wrong check character
// with an error wrapping ErrMalformed or ErrMalformedCode, and never
// panics. It does not check expiry: the issuer's Tracker does.
func ParseInvitation(s string) (Invitation, error) {
	bad := func(why string) (Invitation, error) {
		return Invitation{}, fmt.Errorf("%w: invitation %s", ErrMalformed, why)
	}
	if len(s) > MaxInviteLen {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(s, invitePrefix)
	if !ok {
		return bad("without the devicemesh:pair prefix")
	}
	v, err := url.ParseQuery(rest)
	if err != nil {
		return bad("query does not parse")
	}
	for name, vals := range v {
		switch {
		case name == "a":
		case name != "v" && name != "k" && name != "c" && name != "e":
			return bad("with unknown field " + strconv.Quote(name))
		case len(vals) != 1:
			return bad("with repeated field " + name)
		}
	}
	if v.Get("v") != "1" {
		return bad("of unknown version")
	}
	var inv Invitation
	key, err := base64.RawURLEncoding.DecodeString(v.Get("k"))
	if err != nil || len(key) != len(inv.IssuerKey) {
		return bad("key")
	}
	copy(inv.IssuerKey[:], key)
	if _, err := identity.NoisePublicFor(inv.IssuerKey); err != nil {
		return bad("key is not a curve point")
	}
	inv.Issuer = core.DeviceIDFromKey(inv.IssuerKey)
	exp, err := strconv.ParseInt(v.Get("e"), 10, 64)
	if err != nil || exp <= 0 || exp > 1<<40 {
		return bad("expiry")
	}
	inv.Expires = time.Unix(exp, 0).UTC()
	if inv.code, err = ParseCode(v.Get("c")); err != nil {
		return Invitation{}, err
	}
	inv.Addrs = v["a"]
	if err := checkAddrs(inv.Addrs); err != nil {
		return bad(err.Error())
	}
	return inv, nil
}

// ParseCode normalizes a typed pairing code (case, dashes and spaces
// ignored, 0 read as O and 1 as I) and checks its check character. It
// returns the canonical CodeLen characters or ErrMalformedCode.
func ParseCode(s string) (string, error) {
	if len(s) > 4*CodeLen {
		return "", fmt.Errorf("%w: too long", ErrMalformedCode)
	}
	s = strings.NewReplacer("-", "", " ", "", "0", "O", "1", "I").Replace(strings.ToUpper(s))
	if len(s) != CodeLen {
		return "", fmt.Errorf("%w: want %d characters, got %d", ErrMalformedCode, CodeLen, len(s))
	}
	if strings.Trim(s, codeAlphabet) != "" {
		return "", fmt.Errorf("%w: character outside the code alphabet", ErrMalformedCode)
	}
	if codeCheck(s[:CodeLen-1]) != s[CodeLen-1] {
		return "", fmt.Errorf("%w: check character does not match (typo?)", ErrMalformedCode)
	}
	return s, nil
}

// codeCheck is the Luhn mod 32 check character over the code alphabet.
func codeCheck(s string) byte {
	const n = 32
	factor, sum := 2, 0
	for i := len(s) - 1; i >= 0; i-- {
		addend := factor * strings.IndexByte(codeAlphabet, s[i])
		factor = 3 - factor
		sum += addend/n + addend%n
	}
	return codeAlphabet[(n-sum%n)%n]
}

func checkAddrs(addrs []string) error {
	if len(addrs) > MaxInviteAddrs {
		return fmt.Errorf("%d addresses (max %d)", len(addrs), MaxInviteAddrs)
	}
	for _, a := range addrs {
		if a == "" || len(a) > MaxInviteAddrLen {
			return fmt.Errorf("address of %d bytes", len(a))
		}
		for i := 0; i < len(a); i++ {
			if a[i] <= ' ' || a[i] > '~' {
				return fmt.Errorf("address with non-printable characters")
			}
		}
	}
	return nil
}

// Tracker is the issuer's record of outstanding invitations: each code
// works once, before its expiry, and too many wrong codes burn every
// outstanding invitation (an online guesser gets MaxFailures tries at 45
// bits). It is safe for concurrent use.
type Tracker struct {
	maxFailures int

	mu          sync.Mutex
	outstanding []Invitation
	used        []Invitation
	failures    int
}

// NewTracker returns a tracker that burns its invitations after
// maxFailures wrong codes (<= 0: 5).
func NewTracker(maxFailures int) *Tracker {
	if maxFailures <= 0 {
		maxFailures = 5
	}
	return &Tracker{maxFailures: maxFailures}
}

// Add registers an invitation made by NewInvitation and resets the count
// of wrong codes (the user asked for a new invitation).
func (t *Tracker) Add(inv Invitation) error {
	if _, err := ParseCode(inv.code); err != nil {
		return fmt.Errorf("track invitation: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.outstanding) >= MaxOutstanding {
		return fmt.Errorf("track invitation: %w: %d invitations outstanding", core.ErrInvalidArgument, MaxOutstanding)
	}
	t.outstanding = append(t.outstanding, inv)
	t.failures = 0
	return nil
}

// Redeem consumes the invitation with the given code (typed or from a
// parsed QR) at time now. Errors: ErrMalformedCode for a typo,
// ErrWrongCode for a code matching nothing, ErrCodeUsed for a second use,
// ErrCodeExpired after expiry, ErrTooManyAttempts once too many wrong
// codes burned the invitations.
func (t *Tracker) Redeem(code string, now time.Time) (Invitation, error) {
	c, err := ParseCode(code)
	if err != nil {
		return Invitation{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(now)
	if t.failures >= t.maxFailures {
		return Invitation{}, ErrTooManyAttempts
	}
	if i := match(t.outstanding, c); i >= 0 {
		inv := t.outstanding[i]
		if !now.Before(inv.Expires) {
			return Invitation{}, fmt.Errorf("%w at %s", ErrCodeExpired, inv.Expires.Format(time.RFC3339))
		}
		t.outstanding = append(t.outstanding[:i], t.outstanding[i+1:]...)
		t.used = append(t.used, inv)
		return inv, nil
	}
	if match(t.used, c) >= 0 {
		return Invitation{}, ErrCodeUsed
	}
	t.failures++
	if t.failures >= t.maxFailures {
		t.outstanding = nil
	}
	return Invitation{}, ErrWrongCode
}

// Open returns the codes (as Invitation.Code spells them) of the
// invitations that can still be redeemed at now: registered, neither
// redeemed nor expired, and not burned by too many wrong codes. A device
// admits unknown keys to the pairing ceremony only while one is open.
func (t *Tracker) Open(now time.Time) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failures >= t.maxFailures {
		return nil
	}
	var codes []string
	for _, inv := range t.outstanding {
		if now.Before(inv.Expires) {
			codes = append(codes, inv.Code())
		}
	}
	return codes
}

// prune forgets invitations an hour past their expiry; until then their
// codes still get ErrCodeExpired or ErrCodeUsed rather than ErrWrongCode.
func (t *Tracker) prune(now time.Time) {
	keep := func(invs []Invitation) []Invitation {
		kept := invs[:0]
		for _, inv := range invs {
			if now.Before(inv.Expires.Add(time.Hour)) {
				kept = append(kept, inv)
			}
		}
		return kept
	}
	t.outstanding, t.used = keep(t.outstanding), keep(t.used)
}

// match finds code among invs, comparing every candidate in constant time.
func match(invs []Invitation, code string) int {
	found := -1
	for i := range invs {
		if subtle.ConstantTimeCompare([]byte(invs[i].code), []byte(code)) == 1 {
			found = i
		}
	}
	return found
}
