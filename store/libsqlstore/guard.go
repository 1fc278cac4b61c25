package libsqlstore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/dirlock"
)

// The guard file. Beside the database (its path plus "-lock") the store
// keeps a small file that it locks exclusively while open (a second Open
// of the same file, in any process, fails with core.ErrLocked), and in
// which it records its commit high-water: the sum of its version vector
// after every commit that raised it (one pwrite of 8 bytes, no fsync), the
// boot of the machine that wrote it, and whether the store was closed
// cleanly. A version vector never goes down, so a store that opens behind
// its high-water has lost commits it acknowledged: a WAL cut short or
// deleted, a corrupted frame that made SQLite stop reading early, or an
// older database file put in place of this one. Open refuses such a store
// with core.ErrDamaged when the loss cannot be a power failure: after a
// clean Close (the WAL was checkpointed into the database file), when the
// machine has not restarted since the high-water was written (the
// operating system's cache held both the WAL and the guard), or with
// Options.FullSync (every commit reached the disk before its high-water).
// Otherwise (a power cut with synchronous=NORMAL may lose the last
// commits, as documented) it logs the loss and opens.
//
// A guard file copied together with its database (a folder backup, a VM
// snapshot) matches it; a database copied alone has no guard and opens as
// it is. The guard also records the database file's device and inode
// numbers: a store behind its high-water whose file is another file than
// the one the guard saw (an older copy moved or copied in place of the
// deleted one: a restore) opens, since restoring an older copy is safe
// (the node gives it a new replica incarnation); an older copy written
// over the same file in place cannot be told from damage and is refused,
// with the guard file named in the error (removing it accepts the file).
// Layout, 49 bytes: magic "FEDGUARD" | boot id (16) | high-water (uint64,
// little endian) | flags (1: closed cleanly) | device (uint64) | inode
// (uint64).

const (
	guardMagic   = "FEDGUARD"
	guardSize    = 49
	guardHWAt    = 24
	guardFlagsAt = 32
	guardFileAt  = 33
	flagClean    = 1
)

// bootIDFile holds the Linux kernel's random id of the current boot.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// guard is the store's locked guard file.
type guard struct {
	lock  *dirlock.Lock
	boot  [16]byte // this boot's id; zero where unknown
	hw    uint64   // last high-water written (under wmu)
	prior guardState
}

// guardState is what a guard file held when the store opened.
type guardState struct {
	found bool
	boot  [16]byte
	hw    uint64
	clean bool
	dev   uint64 // the database file's numbers (zero: unknown)
	ino   uint64
}

// acquireGuard locks the guard file of the database at path and reads
// what it holds.
func acquireGuard(path string) (*guard, error) {
	l, err := dirlock.Acquire(path + "-lock")
	if err != nil {
		return nil, err
	}
	g := &guard{lock: l, boot: bootID()}
	var b [guardSize]byte
	n, err := l.File().ReadAt(b[:], 0)
	switch {
	case err != nil && !errors.Is(err, io.EOF):
		_ = l.Unlock()
		return nil, fmt.Errorf("read guard: %w", err)
	case n == 0:
	case n != guardSize || string(b[:8]) != guardMagic:
		_ = l.Unlock()
		return nil, fmt.Errorf("%w: %s is not a guard file of this store (remove it to open the database as it is)", core.ErrDamaged, l.File().Name())
	default:
		g.prior.found = true
		copy(g.prior.boot[:], b[8:24])
		g.prior.hw = binary.LittleEndian.Uint64(b[guardHWAt:])
		g.prior.clean = b[guardFlagsAt]&flagClean != 0
		g.prior.dev = binary.LittleEndian.Uint64(b[guardFileAt:])
		g.prior.ino = binary.LittleEndian.Uint64(b[guardFileAt+8:])
	}
	return g, nil
}

// check compares the store's high-water at open, hw, with what the guard
// recorded (dev and ino: the database file's numbers now): it returns an
// error wrapping core.ErrDamaged when commits were lost in a way neither a
// power failure nor a restore explains, and a description of a loss that
// one of them may explain ("" when nothing was lost).
func (g *guard) check(hw uint64, fullSync bool, dev, ino uint64) (loss string, err error) {
	p := g.prior
	if !p.found || hw >= p.hw {
		return "", nil
	}
	what := fmt.Sprintf("the store holds %d commits but had acknowledged %d", hw, p.hw)
	var zero [16]byte
	name := g.lock.File().Name()
	switch {
	case p.ino != 0 && ino != 0 && (p.dev != dev || p.ino != ino):
		return what + " in another database file (restored from an older copy)", nil
	case p.clean:
		return "", fmt.Errorf("%w: %s before its last clean close (damaged, or an older copy written over it: remove %s to accept it)", core.ErrDamaged, what, name)
	case g.boot != zero && g.boot == p.boot:
		return "", fmt.Errorf("%w: %s, and the machine did not restart since (WAL lost, cut short or corrupted)", core.ErrDamaged, what)
	case fullSync:
		return "", fmt.Errorf("%w: %s, and every commit was synced to disk (WAL lost, cut short or corrupted)", core.ErrDamaged, what)
	}
	return what + " before the machine restarted (commits not yet synced to disk are lost on a power failure)", nil
}

// open records the store as open (not clean) at high-water hw, in the
// database file with numbers dev and ino.
func (g *guard) open(hw, dev, ino uint64) error {
	var b [guardSize]byte
	copy(b[:8], guardMagic)
	copy(b[8:24], g.boot[:])
	binary.LittleEndian.PutUint64(b[guardHWAt:], hw)
	binary.LittleEndian.PutUint64(b[guardFileAt:], dev)
	binary.LittleEndian.PutUint64(b[guardFileAt+8:], ino)
	f := g.lock.File()
	if _, err := f.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("write guard: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write guard: %w", err)
	}
	g.hw = hw
	return nil
}

// raise records a new high-water after a commit (wmu held). It does not
// sync: the guard only needs to survive the process, as the WAL does.
func (g *guard) raise(hw uint64) error {
	if hw <= g.hw {
		return nil
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], hw)
	if _, err := g.lock.File().WriteAt(b[:], guardHWAt); err != nil {
		return fmt.Errorf("write guard: %w", err)
	}
	g.hw = hw
	return nil
}

// closeClean records a clean close at the current high-water, syncs the
// file and unlocks it. Called once the WAL is checkpointed.
func (g *guard) closeClean() error {
	f := g.lock.File()
	_, err := f.WriteAt([]byte{flagClean}, guardFlagsAt)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, g.lock.Unlock())
}

// release unlocks the guard without recording a clean close.
func (g *guard) release() error { return g.lock.Unlock() }

// bootID returns the id of the current boot, or zero where unknown.
func bootID() [16]byte {
	var id [16]byte
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return id
	}
	raw, err := hex.DecodeString(strings.ReplaceAll(string(bytes.TrimSpace(b)), "-", ""))
	if err != nil || len(raw) != len(id) {
		return id
	}
	copy(id[:], raw)
	return id
}

// vvSum is a version vector's high-water: the number of changes it covers.
func vvSum(vv core.VersionVector) uint64 {
	var n uint64
	for _, seq := range vv {
		n += seq
	}
	return n
}
