package libsqlstore

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Checkpoints. SQLite's default is for the connection that commits to
// copy the WAL back into the database file (and fsync it) itself, inside
// the commit, once the WAL passes 1000 pages: a long sync stalls on every
// few megabytes it writes. The store's writer does not: a background
// goroutine checkpoints (PASSIVE, so it never blocks the writer or
// readers) once about CheckpointBytes have been committed, on another
// connection and another core. The WAL still stays bounded: a WAL restarts
// from its beginning only when a write begins with every frame copied back,
// which a checkpointer running beside a busy writer rarely sees, so once the
// WAL file grows past MaxWALBytes, the writer finishes the checkpoint
// itself (the background one has copied most of it already) and its next
// write restarts the WAL, truncating the file to half that (the WAL file
// only grows when its content does, so its size tells the writer when to
// step in). A commit counts as its estimated bytes, and as one page at
// least: a small commit writes whole pages (a 100-byte record appends
// about 50 KiB of WAL frames with 16 KiB pages), which its estimate alone
// (about 300 bytes) would miss, leaving the background goroutine asleep
// for good on a device that writes a record at a time. One page rather
// than the three such a commit writes keeps the background checkpoints
// about as far apart as SQLite's own (every 1000 pages): each costs two
// fsyncs whatever it copies, and each delays whatever runs beside it.
//
// Other connections (the registry, the audit log) keep SQLite's automatic
// checkpoints only as a backstop, past MaxWALBytes of frames: at SQLite's
// default of 1000 pages (16 MiB), an audit append made right after a sync
// frame went out or came in copied the whole WAL back and fsynced, inline,
// holding up that frame's delivery by 10-20 ms (fedbench latency's idle
// tail).

const (
	defaultCheckpointBytes = 4 << 20
	defaultMaxWALBytes     = 64 << 20
	// minCommitPages is the least a commit counts for, in pages.
	minCommitPages = 1
)

// checkpointer runs the store's background checkpoints.
type checkpointer struct {
	s         *Store
	softBytes int64
	hardBytes int64
	walPath   string
	// mu lets one checkpoint run at a time: SQLite refuses a second
	// (busy), and the writer's must not be refused.
	mu       sync.Mutex
	pending  atomic.Int64 // bytes committed since the last background checkpoint
	minBytes int64        // the least a commit counts for (set by start)
	forcedAt int64        // WAL file size at the writer's last checkpoint (under wmu)
	wake     chan struct{}
	stop     chan struct{}
	done     sync.WaitGroup
	runs     atomic.Int64 // background checkpoints run, for tests
	forced   atomic.Int64 // writer checkpoints run, for tests
	restarts atomic.Int64 // restart writes by the background goroutine, for tests
}

func newCheckpointer(s *Store, path string, soft, hard int) *checkpointer {
	if soft <= 0 {
		soft = defaultCheckpointBytes
	}
	if hard <= 0 {
		hard = defaultMaxWALBytes
	}
	hard = max(hard, soft)
	return &checkpointer{s: s, walPath: path + "-wal", softBytes: int64(soft), hardBytes: int64(hard), wake: make(chan struct{}, 1), stop: make(chan struct{})}
}

// start turns automatic checkpoints off on the writer and starts the
// background goroutine.
func (c *checkpointer) start(ctx context.Context) error {
	var pages int64
	if err := c.s.w.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint = 0").Scan(&pages); err != nil {
		return fmt.Errorf("writer checkpoints: %w", err)
	}
	var pageSize int64
	if err := c.s.w.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return fmt.Errorf("writer checkpoints: %w", err)
	}
	c.minBytes = minCommitPages * pageSize
	c.done.Add(1)
	go c.run()
	return nil
}

// close stops the background goroutine and waits for it.
func (c *checkpointer) close() {
	close(c.stop)
	c.done.Wait()
}

// committed notes that the writer committed about n bytes (one page at
// least). Called with wmu held, after the commit.
func (c *checkpointer) committed(ctx context.Context, n int) {
	if c.pending.Add(max(int64(n), c.minBytes)) >= c.softBytes {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	fi, err := os.Stat(c.walPath)
	if err != nil {
		return // no WAL file: nothing to bound
	}
	size := fi.Size()
	if size <= c.hardBytes {
		c.forcedAt = 0
		return
	}
	// While a reader keeps the WAL from restarting, the file stays large:
	// step in again only once it has grown by another CheckpointBytes.
	if c.forcedAt > 0 && size < c.forcedAt+c.softBytes {
		return
	}
	c.forcedAt = size
	c.forced.Add(1)
	if _, err := c.checkpoint(ctx, true); err != nil {
		c.s.log.Warn("writer checkpoint", "err", err)
	}
}

// run checkpoints each time committed asks, until close. Fewer than
// CheckpointBytes committed stay in the WAL (durable there) until more
// follow or the store closes, which checkpoints: an idle store never wakes.
func (c *checkpointer) run() {
	defer c.done.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		}
		c.pending.Store(0)
		c.runs.Add(1)
		complete, err := c.checkpoint(context.Background(), false)
		if err == nil && complete {
			err = c.restart(context.Background())
		}
		if err != nil && !c.s.closed.Load() {
			c.s.log.Warn("background checkpoint", "err", err)
		}
	}
}

// restart begins the WAL anew once a background checkpoint has copied all
// of it back. SQLite restarts a WAL in the first write after such a
// checkpoint, and that write fsyncs the new WAL header: left to the next
// commit, the fsync (10-20 ms on a busy disk) fell on a host's Put, or on
// an audit append that held SQLite's write lock meanwhile, so that the Put
// behind it slept in SQLite's busy handler (1, 2, 5, then 10 ms polls).
// Here it is a write of its own, on the writer under wmu: rewriting the
// schema version with its own value, which changes nothing but writes a
// frame. A reader still on the old frames makes SQLite append instead;
// the next checkpoint tries again.
func (c *checkpointer) restart(ctx context.Context) error {
	c.s.wmu.Lock()
	defer c.s.wmu.Unlock()
	if err := c.s.alive(ctx); err != nil {
		return nil // closing: Close truncates the WAL itself
	}
	err := c.s.inTx(ctx, func() error {
		var v int64
		if err := c.s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return err
		}
		_, err := c.s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v))
		return err
	})
	if err != nil {
		return fmt.Errorf("restart WAL: %w", err)
	}
	c.restarts.Add(1)
	return nil
}

// checkpoint copies committed WAL frames back into the database file
// (PASSIVE: without waiting for, or blocking, anyone), on the writer's
// connection when writer is set (wmu held), else on a pooled one, and
// reports whether it copied every frame of a WAL that had some.
func (c *checkpointer) checkpoint(ctx context.Context, writer bool) (complete bool, err error) {
	const q = "PRAGMA wal_checkpoint(PASSIVE)"
	var busy, log, done int64
	c.mu.Lock()
	defer c.mu.Unlock()
	if writer {
		err = c.s.w.QueryRowContext(ctx, q).Scan(&busy, &log, &done)
	} else {
		err = c.s.db.QueryRowContext(ctx, q).Scan(&busy, &log, &done)
	}
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	return busy == 0 && log > 0 && done == log, nil
}

// truncate copies the whole WAL back into the database file and truncates
// the WAL to nothing, on the writer's connection (wmu held): Close's last
// step, so that the database file alone holds every commit.
func (c *checkpointer) truncate() error {
	var busy, log, done int64
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.s.w.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &log, &done)
	switch {
	case err != nil:
		return fmt.Errorf("checkpoint: %w", err)
	case busy != 0:
		return fmt.Errorf("checkpoint: %w (%d of %d frames copied)", errCheckpointBusy, done, log)
	}
	return nil
}
