package main

import (
	"context"
	"errors"
)

// TEMPORARY: replaced by transport.go.
func runTransport(ctx context.Context, args []string) (result, error) {
	return result{}, errors.New("todo")
}

// TEMPORARY: replaced by connect.go.
func runConnect(ctx context.Context, args []string) (result, error) {
	return result{}, errors.New("todo")
}
