package blob

import (
	"context"
	"testing"
	"time"
)

func TestProfTransfer(t *testing.T) {
	src, dst := openStore(t, testKey()), openStore(t, testKey())
	m, err := src.Put(context.Background(), randReader(9, 128<<20))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := transfer(t, src, dst, m.ID(), nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("transfer %s", time.Since(t0))
}
