//go:build !unix

package libsqlstore

// fileID is unknown (zeros) where inode numbers are not available: a
// replaced database file then cannot be told from a rolled-back one.
func fileID(string) (dev, ino uint64) { return 0, 0 }
