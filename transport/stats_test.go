package transport

import (
	"strings"
	"testing"
	"time"
)

// TestPacketStats: a QUIC session counts the packets it sent and received;
// an in-memory one has no counts.
func TestPacketStats(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			a, b := newIdentity(t), newIdentity(t)
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
			client := k.listen(t, a, NewAllowList(b.PublicKey()), versionRange{}, Limits{})
			echo(t, server)
			s, err := client.Dial(ctxT(t, 5*time.Second), server.Addr(), b.DeviceID())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(nil)
			msg := strings.Repeat("x", 100_000) // about 75 packets each way
			if got, err := roundTrip(t, s, msg); err != nil || got != msg {
				t.Fatalf("round trip: %d bytes, %v", len(got), err)
			}
			st, ok := s.(*Session).PacketStats()
			if ok != (k.name == "quic") {
				t.Fatalf("%s: PacketStats ok = %v", k.name, ok)
			}
			if ok && (st.Sent < 70 || st.Received < 70 || st.Lost > st.Sent || st.SmoothedRTT <= 0) {
				t.Fatalf("stats after 100 kB each way: %+v", st)
			}
		})
	}
}
