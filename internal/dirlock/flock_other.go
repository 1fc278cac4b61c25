//go:build !unix

package dirlock

import (
	"errors"
	"os"
)

var errBusy = errors.New("lock busy")

// flock is a no-op where flock(2) does not exist: the directory is not
// protected against a second node there.
func flock(*os.File) error { return nil }
