package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// flooder holds silent QUIC connections to a listener from several loopback
// source addresses (127.0.0.2 and up): each completes the QUIC handshake and
// then says nothing, as an attacker on the LAN could. With refill set it
// reopens a connection whenever the listener closes one, so the flood lasts.
type flooder struct {
	t      *testing.T
	target *net.UDPAddr
	trs    []*quic.Transport
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	opened int
}

func startFlood(t *testing.T, target string, hosts, perHost int, refill bool) *flooder {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &flooder{t: t, target: ua, ctx: ctx, cancel: cancel}
	for h := 0; h < hosts; h++ {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(2+h))})
		if err != nil {
			t.Skipf("cannot bind 127.0.0.%d: %v", 2+h, err)
		}
		f.trs = append(f.trs, &quic.Transport{Conn: udp})
	}
	t.Cleanup(f.stop)
	ready := make(chan struct{}, hosts*perHost)
	for _, tr := range f.trs {
		for i := 0; i < perHost; i++ {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				first := true
				for ctx.Err() == nil {
					conn, err := f.dial(tr)
					if first {
						ready <- struct{}{}
						first = false
					}
					if err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					select { // silent until the listener gives up on us
					case <-conn.Context().Done():
					case <-ctx.Done():
					}
					_ = conn.CloseWithError(0, "")
					time.Sleep(20 * time.Millisecond) // a steady flood, not a busy loop
					if !refill {
						<-ctx.Done()
					}
				}
			}()
		}
	}
	for i := 0; i < hosts*perHost; i++ {
		<-ready
	}
	return f
}

func (f *flooder) dial(tr *quic.Transport) (*quic.Conn, error) {
	ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx, f.target, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{wire.ALPN}}, &quic.Config{})
	if err == nil {
		f.mu.Lock()
		f.opened++
		f.mu.Unlock()
	}
	return conn, err
}

func (f *flooder) stop() {
	f.cancel()
	f.wg.Wait()
	for _, tr := range f.trs {
		_ = tr.Close()
		_ = tr.Conn.Close()
	}
}

// While 64 silent connections from a few addresses hold every pending
// handshake slot (and keep coming back when closed), a trusted device still
// connects on every try, and an unknown device the Authorizer admits (a
// pairing joiner, XX) still completes its handshake.
func TestTrustedDeviceConnectsDuringFlood(t *testing.T) {
	a, b, joiner := newIdentity(t), newIdentity(t), newIdentity(t)
	server := listenQUIC(t, b, NewAllowList(a.PublicKey(), joiner.PublicKey()), versionRange{}, Limits{HandshakeTimeout: 10 * time.Second})
	echo(t, server)
	client := listenQUIC(t, a, NewAllowList(b.PublicKey()), versionRange{}, Limits{})
	pairer := listenQUIC(t, joiner, NewAllowList(b.PublicKey()), versionRange{}, Limits{})

	f := startFlood(t, server.Addr(), 8, 8, true) // 8 addresses × 8: the default caps
	time.Sleep(200 * time.Millisecond)            // let the listener take them all in

	const tries = 15
	ok := 0
	var errs []error
	for i := 0; i < tries; i++ {
		err := dialAndEcho(t, client, server.Addr(), b.DeviceID())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ok++
	}
	if ok != tries {
		t.Fatalf("trusted device connected %d of %d times during the flood: %v", ok, tries, errs)
	}
	if err := dialAndEcho(t, pairer, server.Addr(), core.DeviceID{}); err != nil {
		t.Fatalf("pairing joiner (XX) during the flood: %v", err)
	}
	f.mu.Lock()
	opened := f.opened
	f.mu.Unlock()
	t.Logf("flood opened %d silent connections", opened)
}

func dialAndEcho(t *testing.T, from core.Transport, addr string, peer core.DeviceID) error {
	t.Helper()
	s, err := from.Dial(ctxT(t, 5*time.Second), addr, peer)
	if err != nil {
		return err
	}
	defer s.Close(nil)
	got, err := roundTrip(t, s, "hello")
	if err != nil {
		return err
	}
	if got != "hello" {
		return fmt.Errorf("echo %q", got)
	}
	return nil
}
