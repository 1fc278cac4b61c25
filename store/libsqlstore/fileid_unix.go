//go:build unix

package libsqlstore

import (
	"os"
	"syscall"
)

// fileID returns the device and inode numbers of the file at path, or
// zeros where unknown.
func fileID(path string) (dev, ino uint64) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return uint64(st.Dev), uint64(st.Ino)
}
