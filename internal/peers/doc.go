// Package peers keeps a node connected to the user's other devices: it
// accepts and dials sessions, keeps at most one session with each peer,
// redials peers whose session ended (with backoff), remembers where peers
// were last seen, and cuts revoked devices off. It knows nothing of the
// sync protocol: each authenticated session is handed to a Handler.
//
// The seams:
//
//   - Transport (core.Transport) dials and accepts authenticated sessions;
//     a relayed transport plugs in here.
//   - Roster says which devices to keep a session with (the trusted,
//     non-revoked devices of the registry).
//   - AddrSource says where a device may be reached. The address book kept
//     by the Manager (addresses learned from hellos and Connect, persisted
//     in the store) is always the first; discovery (mDNS, DHT) adds more.
//     A source calls Manager.Refresh when its addresses change.
//   - Handler runs the sync protocol on one Link (an authenticated session
//     with its bookkeeping). It calls Link.Join once the session syncs,
//     Link.Greet when the peer's hello arrives and Link.Leave when done.
//
// Every timer (redial scans, backoff, dial deadlines) runs on the
// core.Scheduler of Config.Clock, so tests drive them with a
// core.ManualClock.
package peers
