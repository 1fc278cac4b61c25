package relay

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/allocbound"
)

func newIdent(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// keys answers for the devices given, and refuses every other.
func keys(ids ...*identity.Identity) func(core.DeviceID) (core.PublicKey, error) {
	return func(d core.DeviceID) (core.PublicKey, error) {
		for _, id := range ids {
			if id.DeviceID() == d {
				return id.PublicKey(), nil
			}
		}
		return core.PublicKey{}, fmt.Errorf("%s: %w", d.Short(), core.ErrNotFound)
	}
}

func TestSealOpen(t *testing.T) {
	a, b := newIdent(t), newIdent(t)
	for _, n := range []int{0, 1, 700, 1000, 5000, 100 << 10, MaxLetterBody} {
		body := bytes.Repeat([]byte{0xA5}, n)
		l := Letter{Sender: a.DeviceID(), Recipient: b.DeviceID(), Epoch: 7, Kind: LetterChanges, Body: body}
		env, err := Seal(l, a, b.PublicKey(), rand.Reader)
		if err != nil {
			t.Fatalf("seal %d bytes: %v", n, err)
		}
		if !ValidEnvelopeSize(len(env)) || len(env) != EnvelopeSize(n) {
			t.Fatalf("body of %d bytes sealed in %d bytes: not its bucket %d", n, len(env), EnvelopeSize(n))
		}
		got, err := Open(env, b, keys(a))
		if err != nil {
			t.Fatalf("open %d bytes: %v", n, err)
		}
		if got.Sender != a.DeviceID() || got.Recipient != b.DeviceID() || got.Epoch != 7 || !bytes.Equal(got.Body, body) {
			t.Fatalf("letter changed on the way: %+v", got)
		}
		// The plaintext never shows in the envelope.
		if n >= 16 && bytes.Contains(env, body[:16]) {
			t.Fatal("body visible in the envelope")
		}
	}
	if _, err := Seal(Letter{Sender: a.DeviceID(), Recipient: b.DeviceID(), Kind: LetterChanges, Body: make([]byte, MaxLetterBody+1)}, a, b.PublicKey(), rand.Reader); !errors.Is(err, ErrLetterTooLarge) {
		t.Fatalf("oversized letter: %v", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	a, b, c := newIdent(t), newIdent(t), newIdent(t)
	l := Letter{Sender: a.DeviceID(), Recipient: b.DeviceID(), Epoch: 1, Kind: LetterChanges, Body: []byte("hello")}
	env, err := Seal(l, a, b.PublicKey(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(env, b, keys(a)); err != nil {
		t.Fatalf("genuine envelope refused: %v", err)
	}
	// Another device cannot open it.
	if _, err := Open(env, c, keys(a)); !errors.Is(err, ErrBadEnvelope) {
		t.Fatalf("opened by a third device: %v", err)
	}
	// An untrusted sender is refused.
	if _, err := Open(env, b, keys()); !errors.Is(err, ErrBadEnvelope) {
		t.Fatalf("untrusted sender accepted: %v", err)
	}
	// A flipped bit anywhere is refused.
	for _, i := range []int{0, 40, len(env) / 2, len(env) - 1} {
		bad := bytes.Clone(env)
		bad[i] ^= 1
		if _, err := Open(bad, b, keys(a)); !errors.Is(err, ErrBadEnvelope) {
			t.Fatalf("bit %d flipped: %v", i, err)
		}
	}
	// c seals a letter claiming to come from a, signed with c's key: the
	// box opens, the signature does not verify.
	forged, err := sealForged(Letter{Sender: a.DeviceID(), Recipient: b.DeviceID(), Kind: LetterChanges, Body: []byte("x")}, c, b.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(forged, b, keys(a, c)); !errors.Is(err, ErrBadEnvelope) {
		t.Fatalf("forged signature accepted: %v", err)
	}
	// Unsigned: the signature bytes zero.
	unsigned, err := sealWith(Letter{Sender: a.DeviceID(), Recipient: b.DeviceID(), Kind: LetterChanges, Body: []byte("x")}, b.PublicKey(), func([]byte) []byte { return make([]byte, 64) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(unsigned, b, keys(a)); !errors.Is(err, ErrBadEnvelope) {
		t.Fatalf("unsigned envelope accepted: %v", err)
	}
	// A letter for c, sealed to b, is refused by b.
	misaddressed, err := sealWith(Letter{Sender: a.DeviceID(), Recipient: c.DeviceID(), Kind: LetterChanges, Body: []byte("x")}, b.PublicKey(), func(m []byte) []byte { return a.Sign(m) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(misaddressed, b, keys(a)); !errors.Is(err, ErrBadEnvelope) {
		t.Fatalf("letter for another device accepted: %v", err)
	}
}

// sealForged seals l signed by signer whatever l.Sender says.
func sealForged(l Letter, signer *identity.Identity, to core.PublicKey) ([]byte, error) {
	return sealWith(l, to, signer.Sign)
}

// sealWith is Seal with the sender checks left out and the signature made
// by sign (for tests of what Open refuses).
func sealWith(l Letter, to core.PublicKey, sign func([]byte) []byte) ([]byte, error) {
	plain := make([]byte, 0, EnvelopeSize(len(l.Body))-sealOverhead)
	plain = append(plain, letterMagic...)
	plain = append(plain, l.Sender[:]...)
	plain = append(plain, l.Recipient[:]...)
	plain = append(plain, make([]byte, 8)...)
	plain[len(plain)-1] = byte(l.Epoch)
	plain = append(plain, l.Kind, 0, 0, 0, byte(len(l.Body)))
	plain = append(plain, l.Body...)
	plain = append(plain, sign(signedBytes(plain))...)
	plain = plain[:cap(plain)]
	return sealPlain(plain, to, rand.Reader)
}

func TestMailboxPseudonyms(t *testing.T) {
	var key, other [32]byte
	key[0], other[0] = 1, 2
	a, b := newIdent(t).DeviceID(), newIdent(t).DeviceID()
	base := MailboxFor(key, 1, a, 100)
	if MailboxFor(key, 1, a, 100) != base {
		t.Fatal("pseudonym not deterministic")
	}
	seen := map[Mailbox]string{base: "base"}
	for name, m := range map[string]Mailbox{
		"next epoch":      MailboxFor(key, 1, a, 101),
		"next generation": MailboxFor(key, 2, a, 100),
		"other recipient": MailboxFor(key, 1, b, 100),
		"other secret":    MailboxFor(other, 1, a, 100),
	} {
		if prev, dup := seen[m]; dup {
			t.Fatalf("%s has the pseudonym of %s", name, prev)
		}
		seen[m] = name
		if bytes.Contains(m[:], a[:4]) {
			t.Fatalf("%s shows the device id", name)
		}
	}
	if got, err := ParseMailbox(base.String()); err != nil || got != base {
		t.Fatalf("parse %s: %v %v", base, got, err)
	}
	day := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	if EpochAt(day, 0) != EpochAt(day.Add(time.Hour), 0) || EpochAt(day, 0)+1 != EpochAt(day.Add(24*time.Hour), 0) {
		t.Fatal("epochs are not days")
	}
}

func FuzzDecodeLetter(f *testing.F) {
	a, b := newIdent(f), newIdent(f)
	f.Add(letterPlain(a, b, []byte("body")))
	f.Add([]byte("FMv1"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var err error
		// Decoding aliases its input: it allocates nothing per byte.
		allocbound.Check(t, in, 0, allocbound.Slack, func() { _, _, _, err = DecodeLetter(in) })
		_ = err
	})
}

func FuzzOpen(f *testing.F) {
	a, b := newIdent(f), newIdent(f)
	env, err := Seal(Letter{Sender: a.DeviceID(), Recipient: b.DeviceID(), Kind: LetterChanges, Body: []byte("body")}, a, b.PublicKey(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add(make([]byte, 1024))
	look := keys(a)
	f.Fuzz(func(t *testing.T, in []byte) {
		// One buffer of the envelope's size at most.
		allocbound.Check(t, in, 2, allocbound.Slack, func() { _, _ = Open(in, b, look) })
	})
}

func letterPlain(a, b *identity.Identity, body []byte) []byte {
	plain := make([]byte, 0, EnvelopeSize(len(body))-sealOverhead)
	plain = append(plain, letterMagic...)
	plain = append(plain, idBytes(a)...)
	plain = append(plain, idBytes(b)...)
	plain = append(plain, make([]byte, 8)...)
	plain = append(plain, LetterChanges, 0, 0, 0, byte(len(body)))
	plain = append(plain, body...)
	plain = append(plain, a.Sign(signedBytes(plain))...)
	return plain[:cap(plain)]
}

func idBytes(id *identity.Identity) []byte {
	d := id.DeviceID()
	return d[:]
}
