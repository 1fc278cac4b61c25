// Package relay is the client side of fedrelay, the relay that carries a
// node's traffic when no direct path between two devices works, and the
// protocol both sides speak. It never imports the NATS server: only
// relay/server and cmd/fedrelay do.
//
// # Connection
//
// A client holds one connection to a relay: QUIC over UDP ("quic://host:port")
// or, for networks that block UDP, the same QUIC connection carried in
// length-prefixed packets over TLS on TCP ("tls://host:port"). The
// connection carries several streams; every stream the client opens starts
// with one kind byte:
//
//   - KindAuth ('A'), the first stream: the client proves its credential.
//     The relay accepts no other stream before.
//   - KindForward ('F'): the client registers the pseudonym it receives
//     packets for; the packets themselves travel as QUIC datagrams on the
//     connection (see Forwarding).
//   - KindMail ('M'): relay mail (sealed envelopes for offline devices).
//
// After the kind byte, a stream speaks frames (WriteFrame, ReadFrame): a
// 4-byte big-endian length and that many bytes, at most MaxFrame.
//
// # Authentication without device ids
//
// A client authenticates with a credential that every device of one mesh
// derives from the mesh secret (registry.Secret): an Ed25519 key pair whose
// seed is HKDF-SHA256(secret, "fedrelay credential v1" || generation). It
// signs the connection's TLS exporter (so a proof cannot be replayed on
// another connection). The relay learns the credential's public key and
// its id (CredentialID, a hash of it): the same for every device of the
// mesh, and a new one after every rotation of the mesh secret (every
// revocation). An operator admits credentials by listing their ids, or runs
// an open relay that admits any valid proof (limits still apply per
// credential and per connection). No device id, device key or name is ever
// sent to the relay.
//
// # Forwarding
//
// Each device registers a pseudonym, Pseudonym(secret, device): an HMAC of
// its device id under a key derived from the mesh secret, so only members
// of the mesh can tell whose it is or compute another device's. Devices
// reach each other at relay addresses, "relay:<pseudonym hex>", that every
// member computes for every other (Forwarder.Addrs, an AddrSource of the
// node's redial loop). The node's own QUIC transport dials such an address
// through a net.PacketConn (Forwarder, added with transport.QUIC.AddPath)
// whose packets the relay forwards as opaque datagrams: the session is the
// same end-to-end QUIC + Noise session as on a direct path, authenticated
// by the devices' keys.
//
// The relay delivers a packet to the connection that registered the
// destination pseudonym under the same credential: locally, or through
// NATS subject "fedrelay.fwd.<credential>.<pseudonym>" when that connection
// is on another relay instance sharing the NATS cluster. Packets travel in
// one of two ways:
//
//   - the data plane (clients attached over UDP): registering returns a
//     random token and the relay's data port; the client binds the token to
//     its UDP address (DataBind, answered DataBound) and then sends
//     [DataSend][token][destination][packet] and receives
//     [DataDeliver][source][packet] as plain UDP. The packets are already
//     end-to-end encrypted, so there is no second encryption and the relay
//     does a lookup and one write per packet. The token only routes: whoever
//     learns it (on the path) can send in the client's name or redirect its
//     packets, which an on-path attacker could drop anyway; QUIC rejects
//     anything forged.
//   - QUIC datagrams on the client's connection (clients over TLS on TCP,
//     or whose data-plane binding gets no answer): [destination][packet] up,
//     [source][packet] down.
//
// Packets are unreliable, as UDP is: QUIC recovers losses end to end. The
// relay drops what exceeds a client's rate (per connection and per
// credential), its queue or the largest packet size, so that a flood from
// one client costs others nothing but their share of the machine.
//
// # What the relay sees, and what it cannot
//
// The relay operator (and anyone who reads its memory, disk or NATS
// traffic) sees:
//
//   - the IP address and port of every client connection (and data-plane
//     socket), and when it connects and disconnects;
//   - the credential id: which connections belong to the same mesh (one
//     person's devices), until the next rotation of the mesh secret;
//   - the pseudonym each connection registers, and for every forwarded
//     packet its source and destination pseudonyms, its size and its time:
//     so which devices of the mesh talk to each other, when and how much;
//   - for relay mail, the mailbox pseudonyms, envelope sizes (padded) and
//     the times of deposit and collection.
//
// It cannot see or alter undetected:
//
//   - any content: forwarded packets are end-to-end QUIC packets whose keys
//     the relay never has (the Noise handshake inside authenticates the
//     device keys and binds the QUIC session); mail is sealed to the
//     recipient and signed by the sender;
//   - device ids, device keys, device names, collection names, keys or
//     values: pseudonyms are HMACs under a key derived from the mesh
//     secret, which the relay never receives;
//   - a way to link pseudonyms across rotations of the mesh secret (the
//     IP addresses, sizes and timing may still let it guess).
//
// It can drop, delay, reorder or replay packets (QUIC detects replays and
// recovers losses), and it can refuse service.
package relay
