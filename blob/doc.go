// Package blob keeps media blobs (photos, recordings, documents) on the file
// system beside a node's database and moves them between devices.
//
// # Store
//
// A blob is cut into chunks by content-defined chunking (Rabin fingerprints,
// github.com/restic/chunker, with a fixed polynomial shared by every device
// so that the same bytes are cut the same way everywhere). Chunks are
// MinChunk..MaxChunk bytes, about 32 KiB on average: small enough that an
// edit inside a large file touches only a few tens of KiB beyond itself,
// large enough that per-chunk costs (a frame, an index entry, 28 bytes of
// AEAD) stay small. A chunk is named by the
// SHA-256 of its plain bytes (its ID): identical chunks, within one blob or
// across blobs, are stored once and sent once. SHA-256 rather than BLAKE3:
// with the SHA extensions of current x86 and ARM CPUs, Go's SHA-256 hashed
// 32 KiB chunks at about 1 GB/s here against 0.5 GB/s for
// lukechampine.com/blake3, and it needs no dependency.
//
// A blob's Manifest lists its chunks in order (ID and size), its total size
// and the SHA-256 of its whole content. It is kept in two levels (see
// Manifest): pages of about 64 chunk entries, cut where a chunk ID's first
// byte is small so that an edit changes only the pages around it, stored
// and sent as chunks themselves; and a top listing the pages, whose
// SHA-256 is the blob's ID. So a manifest received from anyone is verified
// by its ID, each page and chunk by its own, and a peer that holds an
// older version of a blob fetches only the pages (and chunks) that
// changed: for a 1 MiB edit in 256 MiB, about 12 KB on the wire besides
// the chunks (top, pages, frames), where the whole manifest is 300 KB.
//
// On disk, under the store's directory:
//
//	packs/<n>.pack       chunks, appended one record after another
//	manifests/<name>     one file per manifest
//
// A pack record is the chunk's name, the length of its stored bytes
// (u32, big-endian) and those bytes; a pack is closed at PackSize and the
// next one started. Packs rather than a file per chunk: creating a file
// cost about 0.5 ms on the ext4 this was built on, ten times the rest of a
// 32 KiB chunk's work, and made a transfer four times slower. The index
// (chunk name to pack and offset) lives in memory, rebuilt from the record
// headers when the store opens (about 80 bytes per chunk: 2.5 MB per GiB
// of distinct chunks); a record torn by a crash at a pack's end is cut
// then. Manifests are files, written whole under a temporary name and
// renamed.
//
// With a key (the node's at-rest key, Options.Key), two keys are derived
// from it with HKDF-SHA256: one encrypts every chunk record and manifest
// with AES-256-GCM (a random 12-byte nonce, then the sealed bytes; a
// chunk's associated data is its ID with a kind prefix, so bytes moved
// under another chunk's name fail to open; a manifest is bound to its ID
// by its hash), and one names chunks and manifests by HMAC-SHA256 of their
// ID, so that neither pack headers nor file names reveal which content the
// device holds. Without a key, records and files are plain and named by
// their ID.
//
// Nothing is fsynced: a record that a crash or power loss left damaged
// fails its check (the AEAD, or the hash without a key) when read, is
// dropped from the index, and counts as absent, so a transfer fetches it
// again.
//
// Put writes a blob from an io.Reader and Open reads it as an io.Reader,
// one chunk in memory at a time. GC deletes the chunks that no stored
// manifest lists (it rewrites the packs that held them); DeleteManifest
// drops a blob.
//
// # Transfer
//
// Serve and Fetch move blobs over one stream (a Conn; the node runs them
// on an extra stream of a peer session). The receiver drives: it asks for
// the manifest's top unless it holds it already (a resumed transfer) and
// stores it, then for the pages it lacks, then for the chunks it lacks, in
// requests of a quarter of GroupBytes, keeping up to GroupBytes asked for
// and not yet received so that the sender never waits for a request. Every
// chunk is verified against its ID on receipt (by a writer goroutine, so
// that hashing, encryption and disk overlap the network) and stored at
// once; a chunk that fails is counted, dropped and asked for again (up to
// MaxRetries times). Since each verified chunk is stored as it arrives, the
// top first, a transfer cut off by a disconnect or a restart resumes with
// the chunks still missing: at most the GroupBytes in flight are sent
// again. The receiver holds a few chunks at a time (writeQueue, plus the
// manifest: about 1.2 MB per GiB), whatever the blob's size.
//
// Frames on a transfer stream are a type byte, a 4-byte big-endian length
// and the payload:
//
//	'M' get manifest   id[32] [1]                  receiver to sender
//	'W' want chunks    n × id[32]                  receiver to sender
//	'm' manifest       the top encoding            sender to receiver
//	'n' no manifest    id[32]                      sender to receiver
//	'c' chunk          id[32] data                 sender to receiver
//	'x' no chunk       id[32]                      sender to receiver
//
// A receiver that holds the manifest (a resumed fetch) adds the byte 1 to
// 'M', and the answer 'm' is empty. A sender answers a want with one 'c' or 'x' per ID, in order. It serves
// only chunks listed in a manifest asked for on the same stream, so a peer
// cannot probe for content it does not already know to be part of a blob.
// Pages are asked for and sent as chunks.
package blob
