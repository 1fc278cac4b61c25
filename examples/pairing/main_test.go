package main

import (
	"context"
	"testing"
	"time"
)

// TestExample runs the example end to end, so it keeps working.
func TestExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := run(ctx); err != nil {
		t.Fatal(err)
	}
}
