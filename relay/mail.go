package relay

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

// Relay mail: sealed envelopes a device leaves at the relay for a device
// that is offline, collected and acknowledged later.
//
// # Mailboxes
//
// A mailbox is named by a 16-byte pseudonym,
//
//	HKDF-SHA256(secret = mesh secret key,
//	            salt   = "devicemesh/relay-mailbox/v1",
//	            info   = recipient device id (32) | epoch (8, big-endian)
//	                     | secret generation (8, big-endian))
//
// where epoch is the Unix time divided by the epoch length (MailEpoch by
// default). Only members holding the mesh secret can compute it; the
// relay sees an opaque name that changes every epoch and with every
// secret rotation, and cannot link two epochs' mailboxes, nor a mailbox to
// a device id.
//
// # Envelopes
//
// An envelope is box.SealAnonymous (X25519, XSalsa20-Poly1305, a fresh
// ephemeral key per envelope) to the recipient's Noise key (the X25519
// form of its Ed25519 device key, as registry seals the mesh secret) of
// the letter:
//
//	0   4   magic     "FMv1"
//	4   32  sender    the sending device's id
//	36  32  recipient the recipient device's id
//	68  8   epoch     the epoch of the mailbox it was left in
//	76  1   kind      LetterChanges (1)
//	77  4   length    N, the body's length
//	81  N   body      per kind: LetterChanges carries an internal/wire
//	                  Changes payload (complete transactions)
//	81+N 64 signature Ed25519 by the sender's device key over
//	                  "devicemesh/relay-mail/v1\x00" and bytes 0..81+N
//	...     padding   zero bytes, up to the envelope's size bucket
//
// The sealed envelope is exactly one of EnvelopeSizes: the relay learns a
// size bucket, never a size. It cannot read the sender (inside the box),
// and no one without the sender's key can forge a letter the recipient
// accepts: the recipient checks the signature against the sender's key in
// its device registry, and that the letter names it and the epoch.
//
// # What the relay learns of mail
//
// It sees, for every deposit, collection and acknowledgement: the
// client's IP address and credential id (its mesh, not its device), the
// mailbox pseudonym, the size bucket and the time. From these it can tell
// that some device of a mesh left mail for some (pseudonymous) mailbox,
// and, since a device collects its own mailboxes, which connection
// collects which mailbox during one epoch (an IP address may thus be tied
// to a mailbox for that epoch, never across epochs by the name alone). It
// cannot see device ids, which device sent a letter, the content, the
// exact size, or link a mailbox to the next epoch's. Acknowledged mail is
// deleted (overwritten in the store); unacknowledged mail expires with the
// relay's TTL. The relay can drop, delay or replay mail: replays change
// nothing (transactions held already are skipped), losses are repaired by
// the next session or the next round of mail.

// MailboxSize is the length of a mailbox pseudonym.
const MailboxSize = 16

// MailEpoch is the default epoch length: mailboxes change names this often.
const MailEpoch = 24 * time.Hour

// Mailbox is a mailbox pseudonym.
type Mailbox [MailboxSize]byte

// String returns the pseudonym in hex (it names the mailbox's subject at
// the relay).
func (m Mailbox) String() string { return hex.EncodeToString(m[:]) }

// ParseMailbox parses String's form.
func ParseMailbox(s string) (Mailbox, error) {
	var m Mailbox
	if len(s) != 2*MailboxSize {
		return m, fmt.Errorf("%w: mailbox name of %d characters", ErrBadEnvelope, len(s))
	}
	if _, err := hex.Decode(m[:], []byte(s)); err != nil {
		return m, fmt.Errorf("%w: mailbox name: %w", ErrBadEnvelope, err)
	}
	return m, nil
}

const mailboxSalt = "devicemesh/relay-mailbox/v1"

// MailboxFor returns recipient's mailbox for epoch, under the mesh secret
// key of the given generation.
func MailboxFor(key [32]byte, generation uint64, recipient core.DeviceID, epoch uint64) Mailbox {
	info := make([]byte, 0, 48)
	info = append(info, recipient[:]...)
	info = binary.BigEndian.AppendUint64(info, epoch)
	info = binary.BigEndian.AppendUint64(info, generation)
	out, err := hkdf.Key(sha256.New, key[:], []byte(mailboxSalt), string(info), MailboxSize)
	if err != nil {
		panic(fmt.Sprintf("relay: hkdf: %v", err)) // only for lengths far above 16
	}
	var m Mailbox
	copy(m[:], out)
	return m
}

// EpochAt returns the epoch of t for epochs of length (0: MailEpoch).
func EpochAt(t time.Time, length time.Duration) uint64 {
	if length <= 0 {
		length = MailEpoch
	}
	s := t.Unix()
	if s < 0 {
		return 0
	}
	return uint64(s) / uint64(max(length/time.Second, 1))
}

// EnvelopeSizes are the sizes every sealed envelope is padded to, in
// ascending order. The largest is MaxEnvelope.
var EnvelopeSizes = [...]int{1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, MaxEnvelope}

// MaxEnvelope is the largest envelope (below NATS's default 1 MiB payload
// limit, with room for a subject and headers).
const MaxEnvelope = 896 << 10

// LetterChanges is the kind of a letter whose body is a Changes payload.
const LetterChanges byte = 1

const (
	letterMagic   = "FMv1"
	letterHeader  = 4 + 32 + 32 + 8 + 1 + 4
	letterSig     = 64
	sealOverhead  = box.AnonymousOverhead
	mailSignLabel = "devicemesh/relay-mail/v1\x00"
)

// MaxLetterBody is the largest body a letter carries.
const MaxLetterBody = MaxEnvelope - sealOverhead - letterHeader - letterSig

// ErrBadEnvelope reports an envelope that does not open, is not for this
// device, or carries a signature that does not verify: it is refused.
var ErrBadEnvelope = errors.New("bad relay mail envelope")

// ErrLetterTooLarge reports a body larger than MaxLetterBody.
var ErrLetterTooLarge = errors.New("letter larger than the largest envelope")

// Letter is the content of an envelope.
type Letter struct {
	Sender, Recipient core.DeviceID
	Epoch             uint64
	Kind              byte
	Body              []byte
}

// EnvelopeSize returns the size of the envelope a body of n bytes is
// sealed in (0 when none is large enough).
func EnvelopeSize(n int) int {
	need := n + letterHeader + letterSig + sealOverhead
	for _, s := range EnvelopeSizes {
		if need <= s {
			return s
		}
	}
	return 0
}

// ValidEnvelopeSize reports whether n is one of EnvelopeSizes.
func ValidEnvelopeSize(n int) bool {
	for _, s := range EnvelopeSizes {
		if n == s {
			return true
		}
	}
	return false
}

// Seal signs l with the sender's identity (l.Sender must be its device),
// pads it to its size bucket and seals it to recipientKey, the recipient
// device's Ed25519 public key; r supplies the ephemeral key.
func Seal(l Letter, sender *identity.Identity, recipientKey core.PublicKey, r io.Reader) ([]byte, error) {
	if l.Sender != sender.DeviceID() {
		return nil, fmt.Errorf("seal letter: sender %s is not this identity", l.Sender.Short())
	}
	if core.DeviceIDFromKey(recipientKey) != l.Recipient {
		return nil, fmt.Errorf("seal letter: key is not recipient %s's", l.Recipient.Short())
	}
	size := EnvelopeSize(len(l.Body))
	if size == 0 {
		return nil, fmt.Errorf("seal letter: %w: %d bytes", ErrLetterTooLarge, len(l.Body))
	}
	plain := make([]byte, 0, size-sealOverhead)
	plain = append(plain, letterMagic...)
	plain = append(plain, l.Sender[:]...)
	plain = append(plain, l.Recipient[:]...)
	plain = binary.BigEndian.AppendUint64(plain, l.Epoch)
	plain = append(plain, l.Kind)
	plain = binary.BigEndian.AppendUint32(plain, uint32(len(l.Body)))
	plain = append(plain, l.Body...)
	plain = append(plain, sender.Sign(signedBytes(plain))...)
	plain = plain[:size-sealOverhead] // zero padding: plain's capacity was zeroed by make
	return sealPlain(plain, recipientKey, r)
}

// sealPlain seals a padded letter to the device whose Ed25519 key is to.
func sealPlain(plain []byte, to core.PublicKey, r io.Reader) ([]byte, error) {
	nk, err := identity.NoisePublicFor(to)
	if err != nil {
		return nil, fmt.Errorf("seal letter: %w", err)
	}
	var pub [32]byte
	copy(pub[:], nk)
	out, err := box.SealAnonymous(make([]byte, 0, len(plain)+sealOverhead), plain, &pub, r)
	if err != nil {
		return nil, fmt.Errorf("seal letter: %w", err)
	}
	return out, nil
}

func signedBytes(b []byte) []byte {
	return append([]byte(mailSignLabel), b...)
}

// Open opens an envelope sealed to self and verifies it: the letter must
// name self as recipient, and its signature must verify against the key
// keyOf returns for its sender (keyOf fails for a device this one does not
// trust). Anything else is an error wrapping ErrBadEnvelope. Body aliases
// a buffer of about the envelope's size.
func Open(env []byte, self *identity.Identity, keyOf func(core.DeviceID) (core.PublicKey, error)) (Letter, error) {
	if !ValidEnvelopeSize(len(env)) {
		return Letter{}, fmt.Errorf("%w: %d bytes is no envelope size", ErrBadEnvelope, len(env))
	}
	var pub, priv [32]byte
	copy(pub[:], self.NoisePublic())
	copy(priv[:], self.NoisePrivate())
	plain, ok := box.OpenAnonymous(make([]byte, 0, len(env)-sealOverhead), env, &pub, &priv)
	if !ok {
		return Letter{}, fmt.Errorf("%w: does not open", ErrBadEnvelope)
	}
	l, signed, sig, err := DecodeLetter(plain)
	if err != nil {
		return Letter{}, err
	}
	if l.Recipient != self.DeviceID() {
		return Letter{}, fmt.Errorf("%w: addressed to %s", ErrBadEnvelope, l.Recipient.Short())
	}
	key, err := keyOf(l.Sender)
	if err != nil {
		return Letter{}, fmt.Errorf("%w: sender %s: %w", ErrBadEnvelope, l.Sender.Short(), err)
	}
	if core.DeviceIDFromKey(key) != l.Sender || !identity.Verify(key, signedBytes(signed), sig) {
		return Letter{}, fmt.Errorf("%w: signature of %s does not verify", ErrBadEnvelope, l.Sender.Short())
	}
	return l, nil
}

// DecodeLetter decodes an opened envelope's plaintext: the letter, the
// bytes its signature covers (without the label) and the signature, all
// aliasing plain. It checks the layout only (magic, length, zero padding),
// not the signature. It allocates nothing in proportion to its input.
func DecodeLetter(plain []byte) (l Letter, signed, sig []byte, err error) {
	if len(plain) < letterHeader+letterSig || string(plain[:4]) != letterMagic {
		return Letter{}, nil, nil, fmt.Errorf("%w: not a letter", ErrBadEnvelope)
	}
	copy(l.Sender[:], plain[4:36])
	copy(l.Recipient[:], plain[36:68])
	l.Epoch = binary.BigEndian.Uint64(plain[68:76])
	l.Kind = plain[76]
	n := binary.BigEndian.Uint32(plain[77:81])
	if uint64(n) > uint64(len(plain)-letterHeader-letterSig) {
		return Letter{}, nil, nil, fmt.Errorf("%w: body of %d bytes overruns the letter", ErrBadEnvelope, n)
	}
	end := letterHeader + int(n)
	l.Body = plain[letterHeader:end:end]
	signed, sig = plain[:end:end], plain[end:end+letterSig:end+letterSig]
	if pad := plain[end+letterSig:]; len(bytes.Trim(pad, "\x00")) != 0 {
		return Letter{}, nil, nil, fmt.Errorf("%w: padding is not zero", ErrBadEnvelope)
	}
	if l.Kind != LetterChanges {
		return Letter{}, nil, nil, fmt.Errorf("%w: unknown letter kind %d", ErrBadEnvelope, l.Kind)
	}
	return l, signed, sig, nil
}
