package main

import (
	"context"
	"testing"
	"time"
)

// TestExample runs the companion example end to end, so it keeps working
// (it fails when the devices do not converge or a step errs).
func TestExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if err := run(ctx); err != nil {
		t.Fatal(err)
	}
}
