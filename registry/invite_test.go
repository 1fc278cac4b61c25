package registry

import (
	"crypto/ecdh"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
)

var now = time.Date(2026, 11, 28, 20, 0, 0, 0, time.UTC)

func newInvite(t *testing.T, seed byte) Invitation {
	t.Helper()
	inv, err := NewInvitation(ident(t, 1), []string{"192.0.2.1:4242", "[2001:db8::1]:4242"}, now.Add(10*time.Minute), rand.NewChaCha8([32]byte{seed}))
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestInvitationCodeAndQRRoundTrip(t *testing.T) {
	inv := newInvite(t, 1)
	if !regexp.MustCompile(`^[A-Z2-7]{5}-[A-Z2-7]{5}$`).MatchString(inv.Code()) {
		t.Fatalf("code %q is not 10 base32 characters in two groups", inv.Code())
	}
	qr := inv.String()
	got, err := ParseInvitation(qr)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, inv) {
		t.Fatalf("QR round trip:\n got %#v %v\nwant %#v %v", got, got.Addrs, inv, inv.Addrs)
	}
	if got.Issuer != ident(t, 1).DeviceID() || got.Key() != inv.Key() {
		t.Fatal("parsed invitation names another issuer or derives another key")
	}
	// The typed code is forgiving about case, dashes, spaces, 0/O and 1/I.
	typed := strings.ToLower(strings.ReplaceAll(inv.Code(), "-", " "))
	typed = strings.NewReplacer("o", "0", "i", "1").Replace(typed)
	if c, err := ParseCode(typed); err != nil || c != strings.ReplaceAll(inv.Code(), "-", "") {
		t.Fatalf("ParseCode(%q) = %q, %v", typed, c, err)
	}
	if strings.Contains(inv.GoString(), strings.ReplaceAll(inv.Code(), "-", "")) {
		t.Fatal("GoString leaks the code")
	}
	// Different randomness, different code and key.
	if other := newInvite(t, 2); other.Code() == inv.Code() || other.Key() == inv.Key() {
		t.Fatal("two invitations share a code")
	}
}

func TestEveryTypoInACodeIsCaught(t *testing.T) {
	code := strings.ReplaceAll(newInvite(t, 3).Code(), "-", "")
	for i := 0; i < CodeLen; i++ {
		for _, c := range codeAlphabet {
			if byte(c) == code[i] {
				continue
			}
			typo := code[:i] + string(c) + code[i+1:]
			if _, err := ParseCode(typo); !errors.Is(err, ErrMalformedCode) {
				t.Fatalf("typo %q of %q accepted", typo, code)
			}
		}
	}
	for i := 0; i+1 < CodeLen; i++ {
		if code[i] == code[i+1] {
			continue
		}
		swapped := code[:i] + string(code[i+1]) + string(code[i]) + code[i+2:]
		if _, err := ParseCode(swapped); err == nil {
			t.Logf("transposition at %d not caught (Luhn misses a few)", i)
		}
	}
}

func TestTrackerOneTimeUseExpiryAndGuessing(t *testing.T) {
	tr := NewTracker(3)
	inv, late := newInvite(t, 4), newInvite(t, 5)
	for _, i := range []Invitation{inv, late} {
		if err := tr.Add(i); err != nil {
			t.Fatal(err)
		}
	}
	got, err := tr.Redeem(inv.Code(), now.Add(time.Minute))
	if err != nil || got.Issuer != inv.Issuer {
		t.Fatalf("first use: %v", err)
	}
	if _, err := tr.Redeem(inv.Code(), now.Add(2*time.Minute)); !errors.Is(err, ErrCodeUsed) || !errors.Is(err, core.ErrUnauthorized) {
		t.Fatalf("second use: %v, want ErrCodeUsed", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := tr.Redeem(late.Code(), now.Add(11*time.Minute)); !errors.Is(err, ErrCodeExpired) {
			t.Fatalf("expired, try %d: %v, want ErrCodeExpired", i, err)
		}
	}
	if _, err := tr.Redeem("ABCDE-FGHIJ", now); !errors.Is(err, ErrMalformedCode) {
		t.Fatalf("typo: %v, want ErrMalformedCode", err)
	}

	// Guessing: well-formed wrong codes burn the outstanding invitations.
	target := newInvite(t, 6)
	if err := tr.Add(target); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		guess := newInvite(t, byte(100+i)).Code()
		if _, err := tr.Redeem(guess, now); !errors.Is(err, ErrWrongCode) {
			t.Fatalf("guess %d: %v, want ErrWrongCode", i, err)
		}
	}
	if _, err := tr.Redeem(target.Code(), now); !errors.Is(err, ErrTooManyAttempts) {
		t.Fatalf("right code after the guesses: %v, want ErrTooManyAttempts", err)
	}
}

func TestParseInvitationRefusesMalformed(t *testing.T) {
	good := newInvite(t, 7).String()
	for name, s := range map[string]string{
		"empty":         "",
		"other scheme":  strings.Replace(good, "devicemesh:pair?", "http://x/?", 1),
		"no key":        regexp.MustCompile(`k=[^&]*&?`).ReplaceAllString(good, ""),
		"short key":     regexp.MustCompile(`k=[^&]*`).ReplaceAllString(good, "k=AAAA"),
		"typo in code":  regexp.MustCompile(`c=(.)`).ReplaceAllStringFunc(good, func(m string) string { return "c=" + map[bool]string{true: "B", false: "A"}[m[2] == 'A'] }),
		"version 2":     strings.Replace(good, "v=1", "v=2", 1),
		"repeated code": good + "&c=AAAAAAAAAA",
		"unknown field": good + "&x=1",
		"bad expiry":    regexp.MustCompile(`e=[0-9]*`).ReplaceAllString(good, "e=-5"),
		"huge":          good + strings.Repeat("&a=x", MaxInviteLen),
		"many addrs":    good + strings.Repeat("&a=10.0.0.1:1", MaxInviteAddrs),
		"control addr":  good + "&a=%0a",
	} {
		_, err := ParseInvitation(s)
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMalformedCode) {
			t.Errorf("%s: ParseInvitation = %v, want a malformed error", name, err)
		}
	}
}

func TestSASDetectsManInTheMiddle(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{9})
	key := func() *ecdh.PrivateKey {
		k, err := ecdh.X25519().GenerateKey(rng)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	transcript := func(initiator, responder *ecdh.PrivateKey) []byte {
		h := sha256.New()
		h.Write(initiator.PublicKey().Bytes())
		h.Write(responder.PublicKey().Bytes())
		secret, err := initiator.ECDH(responder.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		h.Write(secret)
		return h.Sum(nil)
	}
	a, b := key(), key()
	// Honest pairing: both sides compute the same transcript, so the same
	// string, in the documented form.
	if sa, sb := SAS(transcript(a, b)), SAS(transcript(a, b)); sa != sb || !regexp.MustCompile(`^\d{3} \d{3}$`).MatchString(sa) {
		t.Fatalf("honest devices show %q and %q", sa, sb)
	}
	// A man in the middle runs one handshake with each side: the two
	// devices display different strings and the user refuses.
	for i := 0; i < 200; i++ {
		m1, m2 := key(), key()
		if SAS(transcript(a, m1)) == SAS(transcript(m2, b)) {
			t.Fatalf("attempt %d: MITM transcripts gave the same string", i)
		}
	}
	// Any single-bit change of a transcript changes the string.
	th := transcript(a, b)
	for bit := 0; bit < len(th)*8; bit++ {
		other := append([]byte(nil), th...)
		other[bit/8] ^= 1 << (bit % 8)
		if SAS(other) == SAS(th) {
			t.Fatalf("flipping bit %d kept the string", bit)
		}
	}
}
