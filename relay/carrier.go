package relay

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
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

// PacketWriter writes carried packets to a connection from a goroutine of
// its own, as many per Write as are waiting: a TLS record and a system
// call a packet would cost more than the rest of the carrying.
type PacketWriter struct {
	w       io.Writer
	before  func() // called before each Write (a write deadline), or nil
	onError func(error)
	block   bool

	ready chan struct{} // one token while packets wait
	room  chan struct{} // one token after a Write emptied the buffer
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	buf     []byte
	err     error
	writing bool // a Write is under way
}

// PacketWriterPending bounds the bytes a PacketWriter holds.
const PacketWriterPending = 256 << 10

// NewPacketWriter starts writing to w. A Write error is reported to
// onError (once) and fails every later packet. With block, WritePacket
// waits for room when PacketWriterPending bytes wait; without, it drops
// the packet (as a full UDP socket buffer would).
func NewPacketWriter(w io.Writer, before func(), onError func(error), block bool) *PacketWriter {
	p := &PacketWriter{w: w, before: before, onError: onError, block: block,
		ready: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan struct{})}
	go p.run()
	return p
}

// WritePacket queues b as one carried packet.
func (p *PacketWriter) WritePacket(b []byte) error {
	if len(b) > MaxCarriedPacket {
		return fmt.Errorf("%w: packet of %d bytes", ErrFrameTooLarge, len(b))
	}
	for {
		p.mu.Lock()
		if p.err != nil {
			err := p.err
			p.mu.Unlock()
			return err
		}
		if len(p.buf)+2+len(b) <= PacketWriterPending {
			p.buf = binary.BigEndian.AppendUint16(p.buf, uint16(len(b)))
			p.buf = append(p.buf, b...)
			first := len(p.buf) == 2+len(b)
			p.mu.Unlock()
			if first {
				select {
				case p.ready <- struct{}{}:
				default:
				}
			}
			return nil
		}
		p.mu.Unlock()
		if !p.block {
			return nil // dropped: QUIC recovers it
		}
		select {
		case <-p.room:
		case <-p.done:
			return net.ErrClosed
		}
	}
}

func (p *PacketWriter) run() {
	var spare []byte
	for {
		select {
		case <-p.done:
			return
		case <-p.ready:
		}
		p.mu.Lock()
		out := p.buf
		p.buf = spare[:0]
		p.writing = len(out) > 0
		p.mu.Unlock()
		if len(out) == 0 {
			spare = out
			continue
		}
		select {
		case p.room <- struct{}{}:
		default:
		}
		if p.before != nil {
			p.before()
		}
		_, err := p.w.Write(out)
		p.mu.Lock()
		p.writing = false
		if err != nil {
			p.err = err
		}
		p.mu.Unlock()
		if err != nil {
			if p.onError != nil {
				p.onError(err)
			}
			p.Close() // wakes a WritePacket waiting for room
			return
		}
		spare = out[:0]
	}
}

// Flush waits until the packets queued so far are written, or for at most
// d; it reports whether they were.
func (p *PacketWriter) Flush(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		p.mu.Lock()
		idle := (len(p.buf) == 0 && !p.writing) || p.err != nil
		p.mu.Unlock()
		if idle {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// Close stops the writer; packets still waiting are dropped. Idempotent.
func (p *PacketWriter) Close() {
	p.once.Do(func() {
		p.mu.Lock()
		if p.err == nil {
			p.err = net.ErrClosed
		}
		p.mu.Unlock()
		close(p.done)
	})
}
