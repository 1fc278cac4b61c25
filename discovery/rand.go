package discovery

import (
	"crypto/rand"
	"io"
)

// readRand fills b from r, or from crypto/rand when r is nil.
func readRand(r io.Reader, b []byte) error {
	if r == nil {
		r = rand.Reader
	}
	_, err := io.ReadFull(r, b)
	return err
}
