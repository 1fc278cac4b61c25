package libsqlstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Closing a connection of the libSQL driver only schedules it: the native
// library drops the connection on a thread of its own runtime, and SQLite
// closes the file's descriptors there, some milliseconds after database/sql
// returns. A process that reopened the file in that window (a host
// restarting its node, a restore copying a file over the path) would share
// the file with a connection about to close it, and closing a descriptor
// drops the POSIX locks SQLite holds through the other ones: the new
// store's reads fail with "disk I/O error", or worse. So Close waits until
// no descriptor of the process refers to the store's files any more.

// releaseTimeout bounds how long Close waits for the driver to close the
// store's files.
const releaseTimeout = 10 * time.Second

// fdDir lists the process's open descriptors as symbolic links (Linux).
// Where it does not exist, Close cannot observe the descriptors and does
// not wait.
const fdDir = "/proc/self/fd"

// storeFiles returns the identities of the store's files that exist now:
// the database, its WAL and its shared-memory index.
func storeFiles(path string) []os.FileInfo {
	var out []os.FileInfo
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if fi, err := os.Stat(p); err == nil {
			out = append(out, fi)
		}
	}
	return out
}

// openDescriptors returns how many of the process's descriptors refer to
// one of files, or -1 when the process's descriptors cannot be listed.
func openDescriptors(files []os.FileInfo) int {
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue // closed meanwhile, or not a file
		}
		for _, f := range files {
			if os.SameFile(fi, f) {
				n++
				break
			}
		}
	}
	return n
}

// waitReleased waits until no descriptor of the process refers to files.
func waitReleased(files []os.FileInfo, timeout time.Duration) error {
	if len(files) == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	delay := 100 * time.Microsecond
	for {
		n := openDescriptors(files)
		if n <= 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d descriptors still open on the store's files after %s", n, timeout)
		}
		time.Sleep(delay)
		delay = min(2*delay, 10*time.Millisecond)
	}
}

// errCheckpointBusy reports a closing checkpoint that could not copy the
// whole WAL back (a reader was still in a transaction).
var errCheckpointBusy = errors.New("checkpoint incomplete: the WAL is still in use")
