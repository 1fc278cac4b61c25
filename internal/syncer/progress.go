package syncer

import (
	"context"
	"errors"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
)

// Progress reporting: what a session has sent to its peer, per collection,
// in the current episode (from the moment the peer lacks something until
// it holds everything this device holds again), against the total the
// changelog says the episode needs, and what waits and why.
//
// The totals come from a census of the changelog ranges the peer lacks,
// read once, in the background, while the changes go out (a long initial
// sync shows its total soon after it starts; a record written meanwhile
// is counted when the census reaches it). Done counts what went out in
// Changes, Priority and Records frames; when the peer holds everything,
// done is raised to the total (changes it received from other devices
// count as done). Reports go to Config.Progress at most once per
// ProgressPeriod of the session's clock, and only when something changed,
// plus one when an episode that was reported ends; an episode shorter
// than a period is never reported: a long sync is visible, a single
// write is not an event.

// ProgressPeriod is the least time between two progress reports of a
// session.
const ProgressPeriod = 250 * time.Millisecond

// WaitReason says why changes for a peer wait.
type WaitReason int

// Wait reasons.
const (
	// WaitNone: nothing waits.
	WaitNone WaitReason = iota
	// WaitPeriodic: the collection is periodic towards the peer; its
	// changes go out with the next batch.
	WaitPeriodic
	// WaitOnDemand: the values stay on this device until the peer asks.
	WaitOnDemand
	// WaitOffline: the peer is not connected.
	WaitOffline
)

// String names the reason.
func (w WaitReason) String() string {
	switch w {
	case WaitNone:
		return "none"
	case WaitPeriodic:
		return "periodic"
	case WaitOnDemand:
		return "on-demand"
	case WaitOffline:
		return "offline"
	}
	return "wait(?)"
}

// Progress is one collection's sync towards one peer in the current
// episode.
type Progress struct {
	Peer       core.DeviceID
	Collection string
	// RecordsDone and BytesDone count what the peer holds of the episode;
	// RecordsTotal and BytesTotal what the episode needs, as far as the
	// census has counted (never below done).
	RecordsDone, RecordsTotal uint64
	BytesDone, BytesTotal     uint64
	// Rate is the bytes per second sent since the previous report.
	Rate float64
	// Waiting counts records held back for Reason.
	Waiting uint64
	Reason  WaitReason
}

// ProgressSink receives a session's progress reports (Config.Progress).
// It must not block: it is called on the session's send path.
type ProgressSink interface {
	// SyncProgress reports the collections of an episode towards peer;
	// peerHas is what the peer holds as far as the session knows.
	SyncProgress(peer core.DeviceID, ps []Progress, peerHas core.VersionVector)
}

// progressState is one session's progress accounting.
type progressState struct {
	mu       sync.Mutex
	colls    map[string]*collProgress
	frontier map[core.DeviceID]uint64 // the census counted up to here
	held     map[string]bool          // periodic collections held back
	heldNow  map[string]bool          // the same, in the current round
	active   bool                     // an episode is in progress
	reported bool                     // this episode was reported
	dirty    bool                     // changed since the last report
	last     time.Time                // the last report
	started  time.Time                // the episode's start

	counting bool // a census runs (send goroutine)
	wg       sync.WaitGroup
	stop     context.CancelFunc
}

type collProgress struct {
	recs, bytes           uint64 // done
	totalRecs, totalBytes uint64 // counted by the census
	lastBytes             uint64 // done at the previous report
}

func (p *progressState) coll(name string) *collProgress {
	if p.colls == nil {
		p.colls = map[string]*collProgress{}
	}
	c := p.colls[name]
	if c == nil {
		c = &collProgress{}
		p.colls[name] = c
	}
	return c
}

// progressSent counts changes that went out to the peer.
func (ps *Session) progressSent(changes []core.Change) {
	if ps.cfg.Progress == nil {
		return
	}
	p := &ps.prog
	p.mu.Lock()
	for _, c := range changes {
		cp := p.coll(c.Collection)
		cp.recs++
		cp.bytes += uint64(changeSize(c))
	}
	p.dirty = true
	p.mu.Unlock()
	ps.maybeReport(false)
}

// progressHeld notes a periodic collection held back this round.
func (ps *Session) progressHeld(collection string) {
	if ps.cfg.Progress == nil {
		return
	}
	p := &ps.prog
	p.mu.Lock()
	if p.heldNow == nil {
		p.heldNow = map[string]bool{}
	}
	p.heldNow[collection] = true
	p.mu.Unlock()
}

// progressRound is called after each round of the send loop (send
// goroutine): it starts a census of what the peer lacks beyond what was
// counted, ends the episode when the peer holds everything (nothing sent,
// nothing waiting), and reports.
func (ps *Session) progressRound(ctx context.Context, vv core.VersionVector, sent, waiting bool) {
	if ps.cfg.Progress == nil {
		return
	}
	p := &ps.prog
	if !sent && !waiting {
		p.mu.Lock()
		if p.frontier == nil {
			p.frontier = map[core.DeviceID]uint64{}
		}
		for o, n := range vv {
			p.frontier[o] = max(p.frontier[o], n)
		}
		for _, c := range p.colls {
			c.totalRecs, c.totalBytes = max(c.totalRecs, c.recs), max(c.totalBytes, c.bytes)
			c.recs, c.bytes = c.totalRecs, c.totalBytes
		}
		clear(p.held)
		clear(p.heldNow)
		p.dirty = true
		final := p.active && p.reported && !p.counting
		if !p.counting {
			p.active = false
		}
		p.mu.Unlock()
		if final {
			ps.maybeReport(true)
			p.mu.Lock()
			clear(p.colls)
			p.reported = false
			p.mu.Unlock()
		}
		return
	}
	p.mu.Lock()
	if !p.active {
		p.active, p.started = true, ps.sched.Now()
	}
	if !maps.Equal(p.held, p.heldNow) {
		p.dirty = true
	}
	p.held, p.heldNow = p.heldNow, map[string]bool{}
	var todo []censusRange
	if !p.counting {
		for o, n := range vv {
			to := ps.sendable(o, n)
			from := max(p.frontier[o], ps.peerHasGet(o))
			if to > from {
				todo = append(todo, censusRange{o, from, to})
			}
		}
	}
	if len(todo) > 0 {
		p.counting = true
		if p.frontier == nil {
			p.frontier = map[core.DeviceID]uint64{}
		}
		cctx, stop := context.WithCancel(ctx)
		p.stop = stop
		p.wg.Add(1)
		go ps.census(cctx, todo)
	}
	p.mu.Unlock()
	ps.maybeReport(false)
}

type censusRange struct {
	origin   core.DeviceID
	from, to uint64
}

// census counts, per collection, the changes of the ranges the peer
// lacks, into the episode's totals.
func (ps *Session) census(ctx context.Context, todo []censusRange) {
	p := &ps.prog
	defer func() {
		p.mu.Lock()
		p.counting = false
		p.dirty = true
		p.mu.Unlock()
		p.wg.Done()
	}()
	for len(todo) > 0 && ctx.Err() == nil {
		if !ps.countRanges(ctx, todo) {
			return // nothing counted (a range gone from the changelog): the next round retries
		}
		// Changes committed while this census ran woke the sender, whose
		// rounds started no census of their own: count them too, or the
		// totals and the waiting count would stop short of them until the
		// next commit.
		vv, err := ps.r.VersionVector(ctx)
		if err != nil {
			return
		}
		todo = todo[:0]
		p.mu.Lock()
		for o, n := range vv {
			if to, from := ps.sendable(o, n), max(p.frontier[o], ps.peerHasGet(o)); to > from {
				todo = append(todo, censusRange{o, from, to})
			}
		}
		p.mu.Unlock()
	}
}

// countRanges adds the changes of todo, per collection, to the episode's
// totals and moves the frontier past them (census). It reports whether it
// counted anything.
func (ps *Session) countRanges(ctx context.Context, todo []censusRange) (counted bool) {
	p := &ps.prog
	for _, r := range todo {
		from := r.from
		for from < r.to && ctx.Err() == nil {
			counts, next, ok := ps.countChunk(ctx, r, from)
			if !ok {
				break
			}
			p.mu.Lock()
			for coll, a := range counts {
				cp := p.coll(coll)
				cp.totalRecs += a.Changes
				cp.totalBytes += a.Bytes
			}
			p.frontier[r.origin] = max(p.frontier[r.origin], next)
			p.dirty = true
			p.mu.Unlock()
			counted = true
			from = next
		}
	}
	return counted
}

// censusChunk is how many sequence numbers one count of the store covers
// (core.ChangeCounter): a long initial sync shows a growing total at
// once, not after the whole changelog was counted.
const censusChunk = 1 << 16

// countChunk counts the changes of r after from, in one step: with the
// store's counter, the next censusChunk sequence numbers; otherwise up to
// batchChanges changes, read. It returns the tallies (bytes as changeSize
// counts them), where the count stopped, and false when nothing could be
// counted (an error, or a range gone from the changelog: the next round
// retries).
func (ps *Session) countChunk(ctx context.Context, r censusRange, from uint64) (map[string]core.ChangeTally, uint64, bool) {
	if ps.count != nil {
		upTo := min(r.to, from+censusChunk)
		cc, err := ps.count.CountChanges(ctx, r.origin, from, upTo)
		switch {
		case errors.Is(err, errors.ErrUnsupported):
			ps.count = nil // the census runs on one goroutine at a time
		case err != nil:
			return nil, from, false
		default:
			for coll, a := range cc {
				a.Bytes += changeOverhead * a.Changes
				cc[coll] = a
			}
			// A stretch without changes (skipped by an advance) counts
			// as counted.
			return cc, upTo, true
		}
	}
	counts := map[string]core.ChangeTally{}
	next := from
	err := ps.r.Changes(ctx, r.origin, from, batchChanges, func(c core.Change) error {
		if c.Seq > r.to {
			return errBatchFull
		}
		a := counts[c.Collection]
		a.Changes++
		a.Bytes += uint64(changeSize(c))
		counts[c.Collection] = a
		next = c.Seq
		return nil
	})
	if next == from || (err != nil && !errors.Is(err, errBatchFull)) {
		return nil, from, false
	}
	return counts, next, true
}

// stopProgress stops the census and waits for it (the session ends).
func (ps *Session) stopProgress() {
	p := &ps.prog
	p.mu.Lock()
	stop := p.stop
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
	p.wg.Wait()
}

// maybeReport sends a report when one is due (or force), and something
// changed.
func (ps *Session) maybeReport(force bool) {
	p := &ps.prog
	now := ps.sched.Now()
	p.mu.Lock()
	// An episode shorter than a period (a write or two) is never
	// reported; a longer one at most once per period.
	if !p.dirty || (!force && (!p.active || now.Sub(p.started) < ProgressPeriod || now.Sub(p.last) < ProgressPeriod)) {
		p.mu.Unlock()
		return
	}
	since := p.last
	if since.Before(p.started) {
		since = p.started
	}
	elapsed := now.Sub(since).Seconds()
	out := p.snapshotLocked(ps.peer, elapsed)
	for _, c := range p.colls {
		c.lastBytes = c.bytes
	}
	p.last, p.dirty, p.reported = now, false, true
	p.mu.Unlock()
	ps.mu.Lock()
	has := ps.peerHas.Clone()
	ps.mu.Unlock()
	ps.cfg.Progress.SyncProgress(ps.peer, out, has)
}

// snapshotLocked lists the episode's collections, sorted by name.
func (p *progressState) snapshotLocked(peer core.DeviceID, elapsed float64) []Progress {
	out := make([]Progress, 0, len(p.colls))
	for name, c := range p.colls {
		pr := Progress{
			Peer: peer, Collection: name, RecordsDone: c.recs, BytesDone: c.bytes,
			RecordsTotal: max(c.totalRecs, c.recs), BytesTotal: max(c.totalBytes, c.bytes),
		}
		if elapsed > 0 && c.bytes > c.lastBytes {
			pr.Rate = float64(c.bytes-c.lastBytes) / elapsed
		}
		if p.held[name] {
			pr.Waiting, pr.Reason = pr.RecordsTotal-pr.RecordsDone, WaitPeriodic
		}
		out = append(out, pr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Collection < out[j].Collection })
	return out
}

// Progress returns the session's current episode, per collection (empty
// when the peer holds everything).
func (ps *Session) Progress() []Progress {
	p := &ps.prog
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.active {
		return nil
	}
	return p.snapshotLocked(ps.peer, 0)
}
