// Package dht finds the user's devices across the internet through the
// BitTorrent mainline DHT (BEP 5) with BEP 44 signed mutable items, using
// github.com/anacrolix/dht/v2.
package dht
