// Package engine is the node below the façade (package federation): Open
// assembles a Core from the store and the node's options, building the
// identity and the rooms (internal/replica, internal/devices,
// internal/anchor, internal/peers, and internal/syncer sessions) and
// wiring them together through small adapters; Core.Close takes it down.
//
// The façade keeps the host API and its types and hands everything else
// here: reads and the stats snapshot, a transaction's write buffer
// (TxBuf), the event fan-out (Hub, generic over the façade's Event), the
// session handler and roster the connection manager calls (Sessions), the
// pairing ceremony's two sides (Pairing), the network lifecycle (Net), the
// guard on the node's directory (DirGuard), Restore's file work, and the
// discovery mechanisms run while the network is up (discovery.go). The
// engine reports to the host only through the hooks in Options (Publish,
// Tampered, Unsettled, Discovery.PeerEvent), so it never sees the façade's
// types.
package engine
