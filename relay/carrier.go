package relay

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Over TLS on TCP, the QUIC connection between a client and the relay is
// carried as packets, each a 2-byte big-endian length and the packet.

// MaxCarriedPacket bounds a carried QUIC packet.
const MaxCarriedPacket = 1500

// WritePacket writes one carried packet.
func WritePacket(w io.Writer, p []byte) error {
	if len(p) > MaxCarriedPacket {
		return fmt.Errorf("%w: packet of %d bytes", ErrFrameTooLarge, len(p))
	}
	buf := make([]byte, 2+len(p))
	binary.BigEndian.PutUint16(buf, uint16(len(p)))
	copy(buf[2:], p)
	_, err := w.Write(buf)
	return err
}

// ReadPacket reads one carried packet into buf (at least
// MaxCarriedPacket bytes) and returns its length.
func ReadPacket(r io.Reader, buf []byte) (int, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n > MaxCarriedPacket || n > len(buf) {
		return 0, fmt.Errorf("%w: carried packet of %d bytes", ErrFrameTooLarge, n)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return 0, err
	}
	return n, nil
}
