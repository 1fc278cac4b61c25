// Package udpbatch moves many UDP datagrams per system call for the
// relay's data plane, where a call per packet would cost more than the rest
// of the forwarding: on Linux, runs of equal-sized datagrams to one address
// leave in one sendmsg with UDP_SEGMENT (GSO), and datagrams the kernel
// coalesced on arrival (UDP_GRO) are split again. Elsewhere, or when the
// kernel refuses, one datagram per call.
package udpbatch

import (
	"net"
	"sync/atomic"
)

// MaxRun bounds the datagrams of one segmented send (the kernel's limit
// is 64 segments and 64 KiB).
const MaxRun = 40

// ReadBuffer is the buffer Read needs: room for coalesced datagrams.
const ReadBuffer = 65536

// Conn wraps one UDP socket.
type Conn struct {
	c   *net.UDPConn
	pc  net.PacketConn
	gso atomic.Bool // segmented sends work
	gro bool        // the socket coalesces arrivals
}

// New wraps pc (batching only when it is a *net.UDPConn).
func New(pc net.PacketConn) *Conn {
	c := &Conn{pc: pc}
	if u, ok := pc.(*net.UDPConn); ok {
		c.c = u
		c.gso.Store(gsoSupported(u))
		c.gro = enableGRO(u)
	}
	return c
}

// Read reads one datagram, or a run the kernel coalesced, into buf (of
// ReadBuffer bytes) and calls fn on each datagram in order. The slices
// are only valid during fn.
func (c *Conn) Read(buf, oob []byte, fn func(pkt []byte, from net.Addr)) error {
	if c.c == nil || !c.gro {
		n, from, err := c.pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		fn(buf[:n], from)
		return nil
	}
	n, oobn, _, from, err := c.c.ReadMsgUDP(buf, oob)
	if err != nil {
		return err
	}
	seg := groSize(oob[:oobn])
	if seg <= 0 || seg >= n {
		fn(buf[:n], from)
		return nil
	}
	for off := 0; off < n; off += seg {
		fn(buf[off:min(off+seg, n)], from)
	}
	return nil
}

// OOBSize is the control buffer Read needs.
const OOBSize = 64

// WriteRun sends pkts to addr: every packet but the last of the same size,
// the last no larger (the shape a segmented send needs; the caller groups
// them so). scratch is reused for the concatenation.
func (c *Conn) WriteRun(pkts [][]byte, addr *net.UDPAddr, scratch []byte) ([]byte, error) {
	if len(pkts) == 1 || c.c == nil || !c.gso.Load() {
		return scratch, c.writeEach(pkts, addr)
	}
	scratch = scratch[:0]
	for _, p := range pkts {
		scratch = append(scratch, p...)
	}
	if _, _, err := c.c.WriteMsgUDP(scratch, segmentOOB(len(pkts[0])), addr); err != nil {
		// The kernel or the route does not take segmented sends: stop
		// trying, and send these one by one.
		c.gso.Store(false)
		return scratch, c.writeEach(pkts, addr)
	}
	return scratch, nil
}

func (c *Conn) writeEach(pkts [][]byte, addr net.Addr) error {
	var first error
	for _, p := range pkts {
		if _, err := c.pc.WriteTo(p, addr); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Runs splits pkts, all for one address, into runs WriteRun can send:
// consecutive packets of one size, a smaller one ending a run.
func Runs(pkts [][]byte, fn func(run [][]byte)) {
	for len(pkts) > 0 {
		size, n := len(pkts[0]), 1
		for n < len(pkts) && n < MaxRun && len(pkts[n]) <= size {
			n++
			if len(pkts[n-1]) < size {
				break
			}
		}
		fn(pkts[:n])
		pkts = pkts[n:]
	}
}
