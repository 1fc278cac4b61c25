// Package dht finds the user's devices across the internet through the
// BitTorrent mainline DHT (BEP 5) and its signed mutable items (BEP 44),
// with github.com/anacrolix/dht/v2. Discoverer is a core.Discoverer that
// follows the contract of package discovery.
//
// # What a device publishes
//
// Each device runs a DHT node of its own (its own UDP socket, Config.Listen)
// that joins the DHT through Config.Bootstrap only: there is no default and
// the library's public routers are never consulted unless the host passes
// PublicBootstrap(). It publishes one BEP 44 mutable item:
//
//	epoch  e    = discovery.Epoch(now, Period)          (hourly by default)
//	seed        = HKDF(mesh secret, purpose "dht/item", generation, e, device id)
//	            = discovery.Key(secret, Label{Purpose: "dht/item", Epoch: e, Device: id})
//	key pair    = Ed25519 from seed                      (ItemKey)
//	target      = SHA-1(public key)                      (BEP 44, no salt)
//	seq         = 1, 2, ... per key (above the highest the DHT holds)
//	value       = discovery.Seal(secret, "dht", device, addresses, now)
//	              followed by random bytes up to ValueSize (896)
//
// The addresses are the node's (discovery.Mesh.Addrs: its interfaces'
// addresses with the QUIC port) plus, once at least two DHT nodes agree on
// it, the public address they see this device at (BEP 42's "ip" field of
// their replies) with the same port: reachable from the internet when the
// device has that address itself, forwards the port, or sits behind a NAT
// that keeps ports. Devices behind other NATs need the relay.
//
// Every member holds the secret, so it computes every trusted device's key
// pair and target for any epoch and looks them up (Config.Devices lists
// them); it opens the value with discovery.Open, which checks the device's
// identity signature against the registry's key, so a member cannot
// announce addresses for another device and nobody else can plant any.
//
// # What an outsider sees
//
// A DHT node storing the item sees a public key, a signature, a small
// sequence number and ValueSize bytes indistinguishable from random. The
// key pair is derived per device, epoch and secret generation, so the
// items of one device in two epochs share nothing an outsider could link,
// and the items of all devices look alike: same size whatever the
// addresses (the sealed blob is padded to a bucket by discovery.Seal, then
// to ValueSize with random bytes; a reader finds the blob's length by
// trying each possible one, as only the right one authenticates). Nothing
// stored carries an address, a port, a device id or a key of the mesh.
//
// What the DHT itself exposes is not hidden: the nodes that store an item
// see the UDP address of the DHT node that put it (usually the device's
// public address, which every DHT participant sees anyway) and the timing
// of its puts, and they see which addresses read it, so they may guess
// that the addresses putting and reading a set of targets within one epoch
// belong to one mesh (never which devices, nor anything that carries over
// to the next epoch but those addresses themselves). A device that wants
// its public address kept from DHT nodes needs a relay, not this package.
//
// # Rotation, revocation, going away
//
//   - A device republishes every Republish, at every epoch start, and as
//     soon as its addresses or the secret generation change (checked at
//     each lookup). Readers look in every epoch within Slack of now and
//     keep the newest announcement.
//   - Revoking a device rotates the mesh secret: from the next publication
//     on, the others' items live at targets derived from the new
//     generation, which the revoked device cannot compute nor open. Each of
//     them also overwrites its old-generation item with an announcement
//     without addresses, so the revoked device, which still reads there,
//     sees them go instead of their last addresses.
//   - When Run ends, the device overwrites its item the same way (a
//     withdrawal, signed like any announcement), and readers report it gone
//     at their next lookup. A device that vanishes without withdrawing is
//     reported gone once its announcement is older than Expire (three
//     republications by default); replays of older announcements are
//     refused (discovery.Guard).
//
// Package dhttest starts small DHT networks on loopback for tests.
package dht
