package federation

import (
	"context"

	"github.com/devicemesh/federation/internal/syncer"
)

// WaitReason says why changes for a peer wait.
type WaitReason = syncer.WaitReason

// Wait reasons (SyncProgress.Reason).
const (
	// WaitNone: nothing waits.
	WaitNone = syncer.WaitNone
	// WaitPeriodic: the collection is periodic towards the peer (its
	// policy or the peer's device policy); its changes go out with the
	// next batch.
	WaitPeriodic = syncer.WaitPeriodic
	// WaitOnDemand: the values stay on this device until the peer asks.
	WaitOnDemand = syncer.WaitOnDemand
	// WaitOffline: the peer is not connected; Waiting counts the changes
	// it lacked when last seen since the node opened (all this device
	// holds if it was not seen: an upper bound), Collection is empty.
	WaitOffline = syncer.WaitOffline
)

// SyncProgress is how the sync of one collection towards one peer
// stands: what this device sent in the current episode (from the moment
// the peer lacks something until it holds everything again) against
// what the episode needs, the rate, and what waits and why.
// RecordsDone equals RecordsTotal, and BytesDone BytesTotal, when an
// episode ends. Reported by EventSyncProgress (Event.Progress) during a
// sync that lasts longer than a quarter of a second, at most four times
// a second per peer, and in Stats.Sync.
type SyncProgress struct {
	Peer       DeviceID
	Collection string
	// RecordsDone and BytesDone count what the peer holds of the
	// episode; RecordsTotal and BytesTotal what the episode needs, as far
	// as this device has counted its changelog (the count runs alongside
	// the sync: early reports may show a total still growing).
	RecordsDone, RecordsTotal uint64
	BytesDone, BytesTotal     uint64
	// Rate is the bytes per second sent since the previous report (0 in
	// Stats).
	Rate float64
	// Waiting counts records held back, for Reason.
	Waiting uint64
	Reason  WaitReason
}

// SyncStats is the sync progress part of Stats.
type SyncStats struct {
	// Progress lists each live session's collections with an episode in
	// progress, then each trusted device that is offline (Reason
	// WaitOffline).
	Progress []SyncProgress
}

func syncProgress(p syncer.Progress) SyncProgress {
	return SyncProgress{
		Peer: p.Peer, Collection: p.Collection,
		RecordsDone: p.RecordsDone, RecordsTotal: p.RecordsTotal,
		BytesDone: p.BytesDone, BytesTotal: p.BytesTotal,
		Rate: p.Rate, Waiting: p.Waiting, Reason: p.Reason,
	}
}

// publishProgress raises one EventSyncProgress per collection reported.
func (n *Node) publishProgress(ps []syncer.Progress) {
	for _, p := range ps {
		if internal(p.Collection) {
			continue // the SDK's own bookkeeping
		}
		sp := syncProgress(p)
		n.events.Publish(p.Collection, Event{Kind: EventSyncProgress, Collection: p.Collection, Origin: p.Peer, Progress: &sp})
	}
}

// syncStats is Stats.Sync.
func (n *Node) syncStats(ctx context.Context) (SyncStats, error) {
	ps, err := n.c.SyncProgress(ctx)
	if err != nil {
		return SyncStats{}, err
	}
	out := SyncStats{Progress: make([]SyncProgress, 0, len(ps))}
	for _, p := range ps {
		if !internal(p.Collection) {
			out.Progress = append(out.Progress, syncProgress(p))
		}
	}
	return out, nil
}
