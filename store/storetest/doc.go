// Package storetest is the conformance suite every core.Store
// implementation must pass. Implementations run it from their own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) core.Store { return memstore.New() })
//	}
//
// The suite checks the documented contract of each method: ranges,
// prefixes, limits and tombstones in Scan; atomic and idempotent Commit
// (replays are no-ops, a gap refuses the whole batch and leaves nothing
// behind); Changes order and limits; the version vector; Truncate; Meta;
// Stats; Close; concurrent readers and writers (run it with -race); values
// of the maximum size; and Batch.Advance: the log keeps what it holds,
// Changes shows the skipped sequence numbers as a jump from wherever a
// reader resumes, and Commit, Truncate and Stats stay exact around it.
package storetest
