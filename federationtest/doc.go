// Package federationtest runs a mesh of federation nodes inside one process,
// on the in-memory transport and store, for the SDK's own tests and for
// hosts that want to test their use of the SDK without disks or sockets.
//
// A Mesh builds N nodes that trust each other, connects them, and lets a
// test cut the network into partitions, heal it, restart nodes (their
// stores survive, as a disk would), and inject faults on every sync stream:
// frames dropped, duplicated or delivered out of order. Each fault breaks
// the reliable-stream contract the sync protocol relies on, so the receiving
// side detects it, closes the session and the mesh reconnects: the faults
// exercise exactly the recovery paths a real network failure would.
// WaitConverged then waits until every node holds identical records.
//
// Options.LibSQL keeps each node's data in a libSQL file instead (Restart
// reopens it) and Options.QUIC connects the nodes over real QUIC on
// loopback. Every node's clock is the mesh's: FreezeClocks stops them all
// at one instant, SetClockOffset skews one. A Recorder per node keeps every
// version the node committed as its own write, across restarts and
// compactions, so a test can account for each acknowledged write.
//
//	m := federationtest.NewMesh(t, 3, federationtest.Options{Seed: 1})
//	m.ConnectAll(ctx)
//	_ = m.Node(0).Put(ctx, "notes", "k", []byte("v"))
//	if err := m.WaitConverged(ctx); err != nil { t.Fatal(err) }
//
// Every random choice comes from Options.Seed, so a failing run is replayed
// by running it again with the same seed (scheduling still varies, so the
// replay exercises the same operations, not the same interleaving).
package federationtest
