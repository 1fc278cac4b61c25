package syncer

import (
	"io"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// Read-ahead: the peer's frames are read, and its Changes frames decoded,
// on a goroutine of their own, at most readAheadFrames ahead of the
// receive loop. While the loop commits a transaction (the longest step of
// a sync's receiving side), the next frames come off the stream and are
// decoded beside it, instead of after it: on the receiver of an initial
// sync, reading and decoding are about a tenth of a record's CPU. The loop
// still takes the frames one at a time, in order, and a read error reaches
// it after every frame read before it, so nothing of the protocol changes:
// only where the bytes are copied and decoded. Memory: at most
// readAheadFrames frames wait, one more is being read and one processed.

// readAheadFrames is how many frames, read and decoded, may wait for the
// receive loop.
const readAheadFrames = 1

// aheadFrame is a frame read ahead: the frame, its changes when it is a
// Changes frame (or why they could not be decoded), or the error that
// ended the reading.
type aheadFrame struct {
	f         wire.Frame
	changes   []core.Change
	decodeErr error
	err       error
}

// frameReader reads a stream's frames ahead of the receive loop.
type frameReader struct {
	frames chan aheadFrame
	free   chan []byte // payload buffers the loop is done with
	done   chan struct{}
}

// readAhead starts reading in's frames ahead (frames up to the session's
// frame limit). The reading ends with the stream (its error is the last
// thing next returns) or with stop.
func (ps *Session) readAhead(in io.Reader) *frameReader {
	r := &frameReader{
		frames: make(chan aheadFrame, readAheadFrames),
		free:   make(chan []byte, readAheadFrames+2),
		done:   make(chan struct{}),
	}
	go r.run(in, ps.cfg.Limits.MaxFrame)
	return r
}

func (r *frameReader) run(in io.Reader, limit int) {
	for {
		var buf []byte
		select {
		case buf = <-r.free:
		default:
		}
		f, err := wire.ReadFrame(in, buf, limit)
		af := aheadFrame{f: f, err: err}
		if err == nil && f.Type == wire.TypeChanges {
			af.changes, af.decodeErr = wire.DecodeChanges(f.Payload)
		}
		select {
		case r.frames <- af:
		case <-r.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// next returns the next frame, in order.
func (r *frameReader) next() aheadFrame { return <-r.frames }

// recycle hands back the payload of a frame the loop is done with, to be
// read into again (ordinary-sized buffers only: huge ones are dropped).
func (r *frameReader) recycle(payload []byte) {
	if cap(payload) == 0 || cap(payload) > batchBytes*2 {
		return
	}
	select {
	case r.free <- payload[:0]:
	default:
	}
}

// stop ends the reading once its current read returns (the session
// closes the stream when the loop ends).
func (r *frameReader) stop() { close(r.done) }
