package merkle

import (
	"fmt"
	"math"
	"slices"
)

// Config tunes a Reconciler. The zero value is a good default.
type Config struct {
	// Salt keys this session's fingerprints. Pick a fresh random value per
	// session (the package takes randomness as an argument): a difference
	// hidden by a fingerprint collision is then found by the next session.
	Salt uint64
	// FPLen is the fingerprint length in bytes, MinFPLen..MaxFPLen; zero
	// means 8. Each comparison of differing nodes misses the difference with
	// probability 2^(-8*FPLen); the final root comparison catches a miss.
	FPLen int
	// RoundBudget is the number of bytes of node summaries and listings the
	// reconciler is willing to spend on one round to save later rounds: it
	// expands several levels at once, or lists a node outright, while the
	// round's estimated response stays under it. Zero means 16 KiB; a
	// negative value means one level per round and listing only at
	// ListThreshold.
	RoundBudget int
	// ListThreshold is the remote key count at or below which a differing
	// node is listed instead of expanded. Zero derives it from the local
	// average key length: list when that costs less than one expansion.
	ListThreshold int
	// MaxRounds bounds the session; a responder that drags it on longer is
	// refused with ErrUnexpected. Zero means 65536.
	MaxRounds int
	// MaxPending bounds the differing nodes queued for later rounds, and so
	// the session's memory (about 64 bytes a node): a peer whose tree
	// differs in more places, or claims to, is refused with ErrLimit and
	// needs a full resync instead. Zero means 1<<21, enough for two
	// completely different million-key trees.
	MaxPending int
}

// Diff is the outcome of a reconciliation: the keys whose entries differ,
// each sorted.
type Diff struct {
	// LocalOnly are keys the local tree has and the remote does not.
	LocalOnly []string
	// RemoteOnly are keys the remote tree has and the local does not.
	RemoteOnly []string
	// Changed are keys both have with different record digests.
	Changed []string
}

// Len returns the number of differing keys.
func (d *Diff) Len() int { return len(d.LocalOnly) + len(d.RemoteOnly) + len(d.Changed) }

// Stats counts what a reconciliation exchanged.
type Stats struct {
	// Rounds is the number of request/response round trips.
	Rounds int
	// RequestBytes and ResponseBytes are the encoded sizes of the messages.
	RequestBytes, ResponseBytes int
	// Nodes is the number of node summaries received; Listed the number of
	// listed keys received.
	Nodes, Listed int
}

// Reconciler drives reconciliation of the local tree against a remote one,
// one request/response round at a time, and yields the keys that differ.
// It is a pure state machine: the caller carries requests to the peer
// (which answers with Tree.Respond) and responses back.
//
//	req := r.Start()
//	for req != nil {
//		resp := send(req)          // the peer runs its Tree.Respond
//		req, err = r.Next(resp)
//	}
//	diff := r.Diff()
//
// The local tree may change between rounds (writes go on during sync); the
// result then reflects a mix of states, and the root comparison of the next
// session catches whatever that hid. A Reconciler is not safe for
// concurrent use, and reads the tree only inside Start and Next.
type Reconciler struct {
	t     *Tree
	cfg   Config
	req   *Request
	todo  []pending // work not yet requested (over per-request limits)
	diff  Diff
	stats Stats
	done  bool
}

// pending is a node known to differ, to expand or list in a coming round.
type pending struct {
	prefix        Prefix
	remote, local int  // key counts; remote is -1 when unknown
	list          bool // list rather than expand
	hasAfter      bool
	after         string
}

// NewReconciler returns a reconciler for t; call Start for the first
// request.
func NewReconciler(t *Tree, cfg Config) *Reconciler {
	if cfg.FPLen == 0 {
		cfg.FPLen = 8
	}
	cfg.FPLen = min(max(cfg.FPLen, MinFPLen), MaxFPLen)
	if cfg.RoundBudget == 0 {
		cfg.RoundBudget = 16 << 10
	}
	if cfg.MaxRounds <= 0 {
		cfg.MaxRounds = 1 << 16
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 1 << 21
	}
	return &Reconciler{t: t, cfg: cfg}
}

// Start returns the first request: the local root, so an already converged
// peer answers in two bytes, and the first expansion (or a listing of
// everything when the local tree is empty).
func (r *Reconciler) Start() *Request {
	root := pending{remote: -1, local: r.t.Len()}
	root.list = root.local == 0
	r.req = r.plan([]pending{root})
	r.req.HasRoot, r.req.Root = true, r.t.Root()
	return r.req
}

// Done reports whether reconciliation has finished.
func (r *Reconciler) Done() bool { return r.done }

// Diff returns the differing keys found. It is complete once Done.
func (r *Reconciler) Diff() Diff { return r.diff }

// Stats returns what the session has exchanged so far.
func (r *Reconciler) Stats() Stats { return r.stats }

// Next consumes the response to the last request and returns the next
// request, or nil when reconciliation is finished. A response that does not
// answer the request, or contradicts it, yields an error wrapping
// ErrUnexpected (or ErrLimit), after which the session is dead.
func (r *Reconciler) Next(resp *Response) (*Request, error) {
	if r.done || r.req == nil {
		return nil, ErrDone
	}
	req := r.req
	r.req = nil
	if err := resp.matches(req); err != nil {
		r.done = true
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	r.stats.Rounds++
	r.stats.RequestBytes += req.Size()
	r.stats.ResponseBytes += resp.Size(req.FPLen)
	if resp.Converged {
		r.finish()
		return nil, nil
	}
	cands := r.todo
	r.todo = nil
	var err error
	if cands, err = r.compareNodes(req, resp, cands); err == nil {
		cands, err = r.compareLists(req, resp, cands)
	}
	if err != nil {
		r.done = true
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	if len(cands) == 0 {
		r.finish()
		return nil, nil
	}
	if len(cands) > r.cfg.MaxPending {
		r.done = true
		return nil, fmt.Errorf("reconcile: %w: %d differing nodes pending", ErrLimit, len(cands))
	}
	if r.stats.Rounds >= r.cfg.MaxRounds {
		r.done = true
		return nil, fmt.Errorf("reconcile: %w: no result after %d rounds", ErrUnexpected, r.stats.Rounds)
	}
	r.req = r.plan(cands)
	return r.req, nil
}

func (r *Reconciler) finish() {
	r.done = true
	slices.Sort(r.diff.LocalOnly)
	slices.Sort(r.diff.RemoteOnly)
	slices.Sort(r.diff.Changed)
}

// compareNodes compares each remote node summary with the local one and
// queues the nodes that differ.
func (r *Reconciler) compareNodes(req *Request, resp *Response, cands []pending) ([]pending, error) {
	var local []nodeSum
	for i, e := range req.Expand {
		local = append(local[:0], make([]nodeSum, 1<<(4*e.Depth))...)
		r.t.expand(e.Prefix, e.Depth, local)
		r.stats.Nodes += len(local)
		for j, rn := range resp.Nodes[i] {
			ln := &local[j]
			if rn.Count == uint64(ln.count) {
				if rn.Count == 0 {
					continue
				}
				h := ln.sum.digest()
				if rn.FP == fingerprint(req.Salt, req.FPLen, &h) {
					continue
				}
			}
			q := e.Prefix.descendant(j, e.Depth)
			if rn.Count == 0 {
				r.t.scan(q, nil, func(_ uint64, key []byte, _ *Digest) bool {
					r.diff.LocalOnly = append(r.diff.LocalOnly, string(key))
					return true
				})
				continue
			}
			cands = append(cands, pending{prefix: q, remote: int(min(rn.Count, 1<<32)), local: ln.count})
		}
	}
	return cands, nil
}

// compareLists compares each remote listing with the local keys of the
// same stretch of the range, and queues continuations of cut listings.
func (r *Reconciler) compareLists(req *Request, resp *Response, cands []pending) ([]pending, error) {
	progress, more := len(req.Expand) > 0, false
	for i, li := range req.List {
		l := &resp.Lists[i]
		r.stats.Listed += len(l.Entries)
		var c *cursor
		if li.HasAfter {
			c = cursorAfter(li.After)
		}
		// Check the remote entries: in range, after the cursor, ascending.
		prev := c
		remote := make([]cursor, len(l.Entries))
		for j, e := range l.Entries {
			cur := cursor{pos: position(e.Key), key: e.Key}
			if !li.Prefix.contains(cur.pos) || (prev != nil && cmpCursor(prev, &cur) >= 0) {
				return cands, fmt.Errorf("%w: listed key out of range or order", ErrUnexpected)
			}
			remote[j] = cur
			prev = &remote[j]
		}
		if len(l.Entries) > 0 {
			progress = true
		}
		// Merge with the local entries up to the last remote one (or to the
		// end of the range when the listing is complete).
		j := 0
		r.t.scan(li.Prefix, c, func(pos uint64, key []byte, h *Digest) bool {
			ec := cursor{pos: pos, key: string(key)}
			for j < len(remote) && cmpCursor(&remote[j], &ec) < 0 {
				r.diff.RemoteOnly = append(r.diff.RemoteOnly, remote[j].key)
				j++
			}
			if j < len(remote) && cmpCursor(&remote[j], &ec) == 0 {
				if l.Entries[j].FP != fingerprint(req.Salt, req.FPLen, h) {
					r.diff.Changed = append(r.diff.Changed, ec.key)
				}
				j++
				return true
			}
			if l.More && j == len(remote) {
				return false // beyond what this page covers
			}
			r.diff.LocalOnly = append(r.diff.LocalOnly, ec.key)
			return true
		})
		for ; j < len(remote); j++ {
			r.diff.RemoteOnly = append(r.diff.RemoteOnly, remote[j].key)
		}
		if l.More {
			more = true
			next := pending{prefix: li.Prefix, remote: -1, list: true, hasAfter: li.HasAfter, after: li.After}
			if len(l.Entries) > 0 {
				next.hasAfter, next.after = true, l.Entries[len(l.Entries)-1].Key
			}
			cands = append(cands, next)
		}
	}
	if more && !progress {
		return cands, fmt.Errorf("%w: listing made no progress", ErrUnexpected)
	}
	return cands, nil
}

func cmpCursor(a, b *cursor) int {
	return cmpKey(a.pos, a.key, b.pos, b.key)
}

// plan turns the nodes known to differ into the next request: which to
// list, which to expand and how deep. Listing costs about (key length +
// fingerprint) per remote key; expanding k levels costs a count byte per
// descendant plus a fingerprint per non-empty one, and a round trip per
// level. Within RoundBudget it spends bytes to save rounds; beyond it, it
// takes the byte-cheapest step.
func (r *Reconciler) plan(cands []pending) *Request {
	req := &Request{Salt: r.cfg.Salt, FPLen: r.cfg.FPLen}
	entryCost := r.avgKeyLen() + 1 + r.cfg.FPLen
	thr := r.listThreshold(entryCost)
	var lists, expand []pending
	for _, c := range cands {
		if c.list || c.local == 0 || c.prefix.Len() >= MaxDepth || (c.remote >= 0 && c.remote <= thr) {
			c.list = true
			lists = append(lists, c)
		} else {
			expand = append(expand, c)
		}
	}
	budget := r.cfg.RoundBudget
	if budget > 0 && len(expand) > 0 {
		// Listing everything now is the fewest rounds; do it when it is
		// affordable.
		cost := 0
		for _, c := range expand {
			cost += estimate(c) * entryCost
		}
		for _, c := range lists {
			if c.remote >= 0 {
				cost += c.remote * entryCost
			}
		}
		if cost <= budget {
			for _, c := range expand {
				c.list = true
				lists = append(lists, c)
			}
			expand = nil
		}
	}
	k := 1
	for budget > 0 && k < MaxExpandDepth && r.expandCost(expand, k+1) <= budget {
		k++
	}
	summaries := 0
	for _, c := range expand {
		d := min(k, MaxDepth-c.prefix.Len())
		if len(req.Expand) == MaxExpandItems || summaries+1<<(4*d) > MaxSummaries {
			r.todo = append(r.todo, c)
			continue
		}
		summaries += 1 << (4 * d)
		req.Expand = append(req.Expand, ExpandItem{Prefix: c.prefix, Depth: d})
	}
	for _, c := range lists {
		if len(req.List) == MaxListItems {
			r.todo = append(r.todo, c)
			continue
		}
		req.List = append(req.List, ListItem{Prefix: c.prefix, HasAfter: c.hasAfter, After: c.after})
	}
	return req
}

// estimate is the expected remote count of a node: the remote's own
// figure, or the local one when the remote's is not known yet.
func estimate(c pending) int {
	if c.remote >= 0 {
		return c.remote
	}
	return c.local
}

// expandCost estimates the response bytes of expanding nodes k levels:
// every descendant costs a count byte, the non-empty ones (expected share
// 1 - e^(-count/16^k) for uniformly placed keys) a fingerprint too.
func (r *Reconciler) expandCost(nodes []pending, k int) int {
	slots := float64(int(1) << (4 * k))
	cost := 0.0
	for _, c := range nodes {
		full := 1 - math.Exp(-float64(estimate(c))/slots)
		cost += slots * (1 + float64(r.cfg.FPLen)*full)
	}
	return int(math.Min(cost, math.MaxInt32))
}

func (r *Reconciler) avgKeyLen() int {
	if n := r.t.Len(); n > 0 {
		return r.t.keyBytes / n
	}
	return 16
}

// listThreshold is the remote count at or below which listing a node costs
// no more than expanding it one level.
func (r *Reconciler) listThreshold(entryCost int) int {
	if r.cfg.ListThreshold > 0 {
		return r.cfg.ListThreshold
	}
	return max(1, Fanout*(1+r.cfg.FPLen)/entryCost)
}
