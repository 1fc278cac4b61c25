package dhttest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/exts/getput"
	"github.com/anacrolix/torrent/bencode"
)

// TestNetworkMutablePutGet checks that the loopback network stores a BEP 44
// mutable item put through one server, that another server reads it back,
// and that Items/StoredBytes expose what the servers hold.
func TestNetworkMutablePutGet(t *testing.T) {
	nw := Start(t, 6)
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub [32]byte
	copy(pub[:], priv.Public().(ed25519.PublicKey))
	salt := []byte("salt")
	value := []byte("hello loopback dht")
	target := bep44.MakeMutableTarget(pub, salt)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := nw.Servers()
	if _, err := getput.Put(ctx, target, srv[0], salt, func(seq int64) bep44.Put {
		p := bep44.Put{V: value, K: &pub, Salt: salt, Seq: seq + 1}
		p.Sign(priv)
		return p
	}); err != nil {
		t.Fatalf("put: %v", err)
	}
	res, _, err := getput.Get(ctx, target, srv[len(srv)-1], nil, salt)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	var got []byte
	if err := bencode.Unmarshal(res.V, &got); err != nil {
		t.Fatalf("decode value: %v", err)
	}
	if !bytes.Equal(got, value) || !res.Mutable {
		t.Fatalf("got %q mutable=%v, want %q", got, res.Mutable, value)
	}
	if len(nw.Items()) == 0 {
		t.Fatal("no server reports the stored item")
	}
	found := false
	for _, b := range nw.StoredBytes() {
		found = found || bytes.Contains(b, value)
	}
	if !found {
		t.Fatal("StoredBytes does not contain the stored value")
	}
}
