package relay

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/allocbound"
	"github.com/devicemesh/federation/internal/wire"
)

func TestMailRequestRoundTrip(t *testing.T) {
	mb := Mailbox{1, 2, 3}
	for _, r := range []MailRequest{
		{Type: TypeMailDeposit, Mailbox: mb, Envelope: make([]byte, 4096)},
		{Type: TypeMailCollect, Mailbox: mb, After: 1 << 40, Max: MaxCollect},
		{Type: TypeMailAck, Mailbox: mb, Seqs: []uint64{1, 300, 1 << 50}},
	} {
		got, err := DecodeMailRequest(r.Type, AppendMailRequest(nil, r))
		if err != nil {
			t.Fatalf("%v: %v", r.Type, err)
		}
		if got.Mailbox != mb || got.After != r.After || got.Max != r.Max || !slices.Equal(got.Seqs, r.Seqs) || !bytes.Equal(got.Envelope, r.Envelope) {
			t.Fatalf("%v: got %+v", r.Type, got)
		}
	}
	for name, r := range map[string]MailRequest{
		"odd envelope size": {Type: TypeMailDeposit, Envelope: make([]byte, 1000)},
		"collect of none":   {Type: TypeMailCollect, Max: 0},
		"collect too many":  {Type: TypeMailCollect, Max: MaxCollect + 1},
		"ack of none":       {Type: TypeMailAck},
		"ack too many":      {Type: TypeMailAck, Seqs: make([]uint64, MaxAck+1)},
	} {
		if _, err := DecodeMailRequest(r.Type, AppendMailRequest(nil, r)); err == nil {
			t.Fatalf("%s accepted", name)
		}
	}
	if _, err := DecodeMailRequest(wire.TypeAppMin, make([]byte, 20)); !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("unknown request: %v", err)
	}
	for _, c := range []MailCode{MailBadRequest, MailFull, MailQuota, MailTooLarge, MailUnavailable} {
		if got := MailCodeOf(DecodeMailErr(AppendMailErr(nil, c, "why"))); got != c {
			t.Fatalf("code %d comes back as %d", c, got)
		}
	}
}

func FuzzDecodeMailRequest(f *testing.F) {
	f.Add(uint8(TypeMailAck), AppendMailRequest(nil, MailRequest{Type: TypeMailAck, Seqs: []uint64{1, 2}}))
	f.Add(uint8(TypeMailCollect), AppendMailRequest(nil, MailRequest{Type: TypeMailCollect, After: 9, Max: 3}))
	f.Add(uint8(TypeMailDeposit), AppendMailRequest(nil, MailRequest{Type: TypeMailDeposit, Envelope: make([]byte, 1024)}))
	f.Fuzz(func(t *testing.T, typ uint8, in []byte) {
		var r MailRequest
		var err error
		// An ack's sequence numbers: 8 bytes a slot, one slot per byte.
		allocbound.Check(t, in, 8, allocbound.Slack, func() { r, err = DecodeMailRequest(wire.Type(typ), in) })
		if err != nil {
			return
		}
		if again := AppendMailRequest(nil, r); !bytes.Equal(again, in) {
			t.Fatalf("request %+v re-encodes as %x, was %x", r, again, in)
		}
	})
}

func FuzzDecodeMailItem(f *testing.F) {
	f.Add(AppendMailItem(nil, Mail{Seq: 5, Envelope: make([]byte, 1024)}))
	f.Fuzz(func(t *testing.T, in []byte) {
		var m Mail
		var err error
		allocbound.Check(t, in, 0, allocbound.Slack, func() { m, err = DecodeMailItem(in) })
		if err == nil && !bytes.Equal(AppendMailItem(nil, m), in) {
			t.Fatalf("item re-encodes differently")
		}
		// The error quotes the reason: a few bytes per byte.
		allocbound.Check(t, in, 8, allocbound.Slack, func() { _ = DecodeMailErr(in) })
	})
}
