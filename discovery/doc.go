// Package discovery finds the user's own devices on the networks they share
// and makes this device findable, without telling anyone else anything.
//
// # Contract
//
// A mechanism (discovery/mdns on the local network, discovery/dht on the
// BitTorrent mainline DHT, Static for addresses a host configures) is a
// core.Discoverer: Run(ctx, self, found) announces this device's addresses
// and reports, through found, the addresses of trusted devices
//
//   - as they appear: found(PeerInfo{Device, Addrs, Seen}) with the
//     addresses read from a verified announcement;
//   - as they change: found again with the new address list (the whole
//     list, not a difference);
//   - as they go: found(PeerInfo{Device, Addrs: nil, Seen}) once the
//     mechanism has stopped hearing from the device (its announcement
//     expired or was withdrawn).
//
// Run reads the current mesh secret, the trusted keys and this device's
// current addresses from a Mesh at every announcement and every lookup, so
// a secret rotation, a revocation or an address change applies without a
// restart. found is called only for devices the Mesh trusts, never for this
// device, and may be called from several goroutines; it must not block long.
// Which mechanism reported an address is known to the caller, who runs each
// one with its own found.
//
// # Privacy
//
// Outsiders on the same LAN or reading the DHT must learn nothing they could
// link to a person or a device. So:
//
//   - Every name, record key and DHT target is derived (HKDF-SHA256) from
//     the mesh secret (key and generation), a purpose label and an epoch
//     number, with Derive, Name and Target. Epochs advance every rotation
//     period (Epoch, DefaultPeriod); a new secret generation (after every
//     revocation) changes every name at once, so a revoked device no longer
//     knows where to look.
//   - What is announced is an opaque sealed blob (Seal): the device id, its
//     addresses and the announcement time, signed with the device's Ed25519
//     identity key (the public key travels inside, the device id is its
//     hash), then encrypted with XChaCha20-Poly1305 under a key derived
//     from the mesh secret, with a fresh random nonce and padded to a bucket
//     size. Only mesh members open it (Open); the signature is verified
//     against the key the device registry holds for that device, so even a
//     member cannot announce addresses for another device; the time bounds
//     replays (MaxAge, Guard).
//
// # Sealed announcement, byte by byte
//
//	version   1 byte, 1
//	nonce     24 bytes, random
//	box       XChaCha20-Poly1305(key, nonce, plain, ad)
//	  key     Derive(secret, Label{Purpose: purpose + "/seal"}), 32 bytes
//	  ad      "devicemesh/discovery/v1/seal" 0x00 purpose 0x00 generation (8, big endian)
//	  plain   identity public key (32) | time (8, Unix milliseconds, big endian) |
//	          address count (1) | per address: length (1), bytes |
//	          signature (64) | zero padding to a multiple of SealBucket
//	  signed  "devicemesh/discovery/v1/announce" 0x00 purpose 0x00
//	          generation (8) | public key | time | address count | addresses
//
// The purpose label keeps the blobs of one mechanism from being replayed to
// another.
package discovery
