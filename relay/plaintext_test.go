package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devicemesh/federation/relay"
)

// TestRelaySeesNoPlaintext: a unique marker written on the phone (as a key
// and, many times over, in the value) reaches the laptop through the relay
// and appears in no byte the relay read from its clients after removing
// their TLS (its -tap copy of every datagram, stream byte and NATS
// message), nor in its logs at debug level, nor in any file it stored
// (JetStream's included). The tap does hold what the relay can see: the
// devices' pseudonyms, and at least as many bytes as the value.
func TestRelaySeesNoPlaintext(t *testing.T) {
	dir := t.TempDir()
	tapPath := filepath.Join(dir, "tap")
	r := startRelay(t, "-tap", tapPath, "-debug")
	phone, fp := relayedNode(t, "phone", "quic://"+r.ready["udp"])
	laptop, fl := relayedNode(t, "laptop", "tls://"+r.ready["tls"])
	pair(t, phone, laptop)
	sameSecret(t, phone, laptop)
	fp.blocked.Store(true)
	fl.blocked.Store(true)

	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	marker := "PLAINTEXT-MARKER-" + hex.EncodeToString(rnd[:])
	value := strings.Repeat(marker+" ", 64<<10/(len(marker)+1))
	if err := phone.Put(context.Background(), "notes", marker, []byte(value)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the marker reaches the laptop through the relay", func() bool {
		return holds(laptop, "notes", marker, value)
	})
	secret, err := phone.MeshSecret()
	if err != nil {
		t.Fatal(err)
	}
	r.stop() // flushes the tap and the logs

	tap, err := os.ReadFile(tapPath)
	if err != nil {
		t.Fatal(err)
	}
	pseud := relay.Pseudonym(secret.Key, secret.Generation, phone.DeviceID())
	if !bytes.Contains(tap, pseud[:]) || len(tap) < len(value) {
		t.Fatalf("the tap (%d bytes) does not hold what the relay forwarded: the test would prove nothing", len(tap))
	}
	checked := 0
	scan := func(path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		checked += len(b)
		id := phone.DeviceID()
		for _, m := range [][]byte{[]byte(marker), []byte(id.String()), id[:]} {
			if bytes.Contains(b, m) {
				t.Errorf("%s holds %q", path, m)
			}
		}
	}
	scan(tapPath)
	scan(r.logPath)
	err = filepath.Walk(r.dataDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			scan(p)
		}
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	t.Logf("checked %d bytes (tap %d, log and store the rest): no marker, no device id", checked, len(tap))
}
