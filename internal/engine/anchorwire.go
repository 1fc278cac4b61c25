package engine

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/anchor"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/internal/syncer"
)

// StartAnchor runs the anchor's head loop until closed is closed, counted
// in wg. Called by the node's constructor, before the node runs.
func StartAnchor(ctx context.Context, a *anchor.Anchor, wg *sync.WaitGroup, closed <-chan struct{}) {
	held := a.Open(ctx)
	loopCtx, cancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		go func() {
			select {
			case <-closed:
				cancel()
			case <-loopCtx.Done():
			}
		}()
		a.Run(loopCtx, held)
	}()
}

// AnchorReplica is the commit pipeline and the store, as the anchor reads
// and writes _fed.auditheads.
type AnchorReplica struct {
	*replica.Replica
	Store core.Store
}

func (r AnchorReplica) Get(ctx context.Context, collection, key string) (core.Record, error) {
	return r.Store.Get(ctx, collection, key)
}

// CloseReason turns a session's end into a short reason code.
func CloseReason(err error) string {
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, context.Canceled):
		return "done"
	case errors.Is(err, core.ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, core.ErrClockDrift):
		return "clock-drift"
	case errors.Is(err, core.ErrProtocol):
		return "protocol"
	case errors.Is(err, syncer.ErrTimeout):
		return "timeout"
	}
	return "error"
}
