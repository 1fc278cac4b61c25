package main

import (
	"context"
	"errors"
)

// TEMPORARY: replaced by write.go.
func runWrite(ctx context.Context, args []string) (result, error) { return result{}, errors.New("todo") }
