package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/peers"
)

// Net is the node's network: its transport from Start until Close, and the
// context the connection manager runs in.
type Net struct {
	mu      sync.Mutex
	tr      core.Transport     // nil until Start
	runCtx  context.Context    // lives until the network stops
	stopNet context.CancelFunc // stops the network
}

// Start builds the transport with factory and hands it to the connection
// manager, which runs until ctx ends, closed is closed or Close; the
// watcher is counted in wg. Starting twice is an error.
func (nt *Net) Start(ctx context.Context, factory func(context.Context) (core.Transport, error), mgr *peers.Manager, closed <-chan struct{}, wg *sync.WaitGroup, log *slog.Logger) error {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	if nt.tr != nil {
		return fmt.Errorf("start: already started")
	}
	tr, err := factory(ctx)
	if err != nil {
		return fmt.Errorf("start transport: %w", err)
	}
	nt.tr = tr
	runCtx, cancel := context.WithCancel(context.Background())
	if err := mgr.Start(runCtx, tr); err != nil {
		cancel()
		nt.tr = nil
		_ = tr.Close()
		return err
	}
	nt.stopNet = cancel
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-closed:
		case <-runCtx.Done():
		}
		cancel()
	}()
	nt.runCtx = runCtx
	log.Info("node online", "addr", tr.Addr())
	return nil
}

// Addr returns the transport's address, or "" before Start.
func (nt *Net) Addr() string {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	if nt.tr == nil {
		return ""
	}
	return nt.tr.Addr()
}

// Close stops the network and closes the transport.
func (nt *Net) Close() error {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	if nt.stopNet != nil {
		nt.stopNet()
	}
	if nt.tr != nil {
		if err := nt.tr.Close(); err != nil {
			return fmt.Errorf("close transport: %w", err)
		}
	}
	return nil
}
