package transport

import (
	"bytes"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
)

// TestHandshakeHash checks the channel binding layers above rely on: both
// ends of one session hold the same 32-byte value, and every other
// session, even between the same two devices with the same pattern, holds
// another one. A man in the middle runs two sessions, so the values it
// would have to splice differ.
func TestHandshakeHash(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			a, b := newIdentity(t), newIdentity(t)
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
			client := k.listen(t, a, NewAllowList(b.PublicKey()), versionRange{}, Limits{})
			seen := make(map[string]bool)
			for i, peer := range []core.DeviceID{{}, {}, b.DeviceID(), b.DeviceID()} { // XX twice, IK twice
				accepted := make(chan core.Session, 1)
				go func() {
					s, err := server.Accept(ctxT(t, 5*time.Second))
					if err != nil {
						t.Error(err)
					}
					accepted <- s
				}()
				cs, err := client.Dial(ctxT(t, 5*time.Second), server.Addr(), peer)
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				ss := <-accepted
				if ss == nil {
					t.FailNow()
				}
				ch, sh := cs.(*Session).HandshakeHash(), ss.(*Session).HandshakeHash()
				if len(ch) != 32 {
					t.Fatalf("session %d: handshake hash of %d bytes, want 32", i, len(ch))
				}
				if !bytes.Equal(ch, sh) {
					t.Fatalf("session %d: ends disagree: %x vs %x", i, ch, sh)
				}
				if seen[string(ch)] {
					t.Fatalf("session %d: handshake hash repeats an earlier session's", i)
				}
				seen[string(ch)] = true
				ch[0] ^= 0xff // the caller owns its copy
				if bytes.Equal(ch, cs.(*Session).HandshakeHash()) {
					t.Fatal("HandshakeHash returned the session's own slice")
				}
				_ = cs.Close(nil)
				_ = ss.Close(nil)
			}
		})
	}
}
