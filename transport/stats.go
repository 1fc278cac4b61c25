package transport

import "time"

// PacketStats is what QUIC counted on a session's connection: packets
// sent (retransmissions included), declared lost, received, and the
// smoothed round-trip time.
type PacketStats struct {
	Sent, Lost, Received uint64
	SmoothedRTT          time.Duration
}

// PacketStats returns the counts of s's QUIC connection, and false for a
// session not on QUIC (the in-memory transport).
func (s *Session) PacketStats() (PacketStats, bool) {
	m, ok := s.m.(*quicMux)
	if !ok {
		return PacketStats{}, false
	}
	st := m.conn.ConnectionStats()
	return PacketStats{Sent: st.PacketsSent, Lost: st.PacketsLost, Received: st.PacketsReceived, SmoothedRTT: st.SmoothedRTT}, true
}
