package federation

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/engine"
	"github.com/devicemesh/federation/policy"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// Config assembles a Node. The zero value of every field has a documented
// meaning; only Dir (or Store) is required.
type Config struct {
	// Dir is the directory where the default store keeps its libSQL file
	// (federation.db). Required unless Store is set. The node locks it
	// (LockFile) while it runs, also when Store is set: a second node on
	// the same Dir, in any process, gets ErrLocked. Once the device has an
	// identity the lock file names it, and New refuses (ErrDamaged) a store
	// that holds no identity or another one, instead of minting a new one.
	Dir string

	// Device describes this device to the user's other devices.
	Device DeviceConfig

	// Encryption encrypts the default store's file at rest. The zero value
	// (no key) leaves it plain: a host that wants encryption must supply
	// a key, since a key kept beside the data would protect nothing.
	Encryption EncryptionConfig

	// Store replaces the default libSQL store. The node takes ownership and
	// closes it on Close. New looks for its optional capabilities once, on
	// it or along its Unwrap chain (core.Unwrapper): a wrapper around the
	// libSQL store keeps the device registry and the audit log in its file
	// only if it forwards DB or implements Unwrap; a store without
	// core.SQLStore gets both in memory, with a warning (see core.SQLStore).
	Store Store

	// Collections overrides policies per collection name. nil means
	// DefaultPolicies(); entries given here replace the default of the same
	// name, and collections named nowhere get medium priority, immediate
	// mode, last-writer-wins.
	Collections map[string]Policy

	// FullSync makes every commit of the default libSQL store durable
	// against power loss and operating-system crashes (synchronous=FULL:
	// an fsync of the WAL per commit), not only against the process being
	// killed (the default, synchronous=NORMAL, where a power cut may lose
	// the last commits but never corrupts the file). Its cost is one fsync
	// per transaction: measure it with
	// "go run ./cmd/fedbench write -fullsync" against the default (README,
	// "Durability"). Batching writes in Update amortises it. It has no
	// effect on a Store given in Store (set its own option).
	FullSync bool

	// StrictCollections makes a write to a collection named neither in
	// DefaultPolicies nor in Collections fail with ErrInvalidArgument, so
	// that a typo ("Profile") is an error instead of a new collection with
	// last-writer-wins. Reads of such names return ErrInvalidArgument too.
	StrictCollections bool

	// Clock supplies physical time for the hybrid logical clock. nil means
	// the system clock.
	Clock Clock

	// MaxClockDrift bounds how far ahead of the local clock (Clock) a
	// peer's timestamps may pull this device's hybrid logical clock. Changes
	// from trusted devices are accepted and merged whatever their
	// timestamps, so a device whose clock is wrong still converges and none
	// of its writes are lost; but this device's clock follows a remote
	// timestamp only up to its own clock plus MaxClockDrift, and every
	// batch beyond that raises EventClockDrift and counts in
	// Stats.ClockDrift (see core.HLC for the exact rule). A local write
	// that replaces a version stamped beyond this device's clock is still
	// stamped after it (that record only), and so is a registry operation
	// after the registry's latest, so that what a write supersedes never
	// wins over it. 0 means one minute.
	MaxClockDrift time.Duration

	// Network says how the node reaches the user's other devices once
	// Start is called. The zero value listens on QUIC on every interface.
	Network NetworkConfig
	// Relay attaches the node to a relay for devices it cannot reach
	// directly (lane h29). The zero value: no relay.
	Relay RelayConfig

	// Discovery says how the node finds the user's other devices. The zero
	// value discovers on the local network (mDNS) with no configuration.
	Discovery DiscoveryConfig

	// Reembed, when set, is called for every embedding that a merge
	// marked stale (see ReembedFunc). nil leaves stale vectors flagged for
	// the host to find with conflict.NeedsReembed.
	Reembed ReembedFunc

	// SyncTimeout is how long a sync exchange that expects an answer (a
	// Merkle repair round) waits for the peer before the session is closed
	// and retried. 0 means 30 seconds.
	SyncTimeout time.Duration

	// Events tunes Subscribe.
	Events EventsConfig

	// Logger receives structured logs. nil discards them. Payloads, keys and
	// personal text are never logged.
	Logger *slog.Logger

	// Rand is the source of randomness for keys and nonces, and of the
	// redial jitter. nil means crypto/rand (math/rand/v2 for the jitter).
	Rand io.Reader

	// plan is the policy planner built from Collections by validate.
	plan *policy.Planner
	// devType is Device.Type parsed (by validate).
	devType registry.DeviceType
}

// DeviceConfig describes this device.
type DeviceConfig struct {
	// Name is shown to the user on other devices ("Anna's phone"). Empty
	// means "device".
	Name string
	// Type is the kind of hardware: "phone", "tablet", "laptop",
	// "desktop", "server" or "unknown" (empty means "unknown"). It is
	// recorded in the device registry and reaches every device of the
	// mesh (Device.Type); any other text is recorded as "unknown", with a
	// warning in the log.
	Type string
}

// EncryptionConfig supplies the key that encrypts the default store at
// rest: its libSQL file, WAL and backups (AES-256-CBC per page through
// SQLite3 Multiple Ciphers; see the store/libsqlstore documentation). The
// key is 32 random bytes (crypto/rand) that the host keeps outside Dir,
// ideally in the operating system's keychain; the same key must be given
// at every start, and a wrong one makes New fail with ErrWrongKey, as
// does a key for a store created plain or no key for an encrypted one.
// RotateKey changes the key, or encrypts a plain store. Set at most one
// of Key and KeyProvider; with neither, the store is not encrypted. Only
// the default store is encrypted: setting a key with Config.Store is
// ErrInvalidConfig.
type EncryptionConfig struct {
	// Key is the encryption key (32 bytes). nil: see KeyProvider.
	Key []byte
	// KeyProvider, when set, is called once by New to get the key (from
	// the OS keychain, say); an error from it fails New. nil: see Key.
	KeyProvider func(ctx context.Context) ([]byte, error)
}

// key returns the configured key: nil when there is none.
func (e EncryptionConfig) key(ctx context.Context) ([]byte, error) {
	if e.KeyProvider == nil {
		return e.Key, nil
	}
	k, err := e.KeyProvider(ctx)
	if err != nil {
		return nil, fmt.Errorf("encryption key provider: %w", err)
	}
	if len(k) != libsqlstore.KeySize {
		return nil, fmt.Errorf("%w: encryption key provider returned %d bytes, want %d", core.ErrInvalidConfig, len(k), libsqlstore.KeySize)
	}
	return k, nil
}

// EventsConfig tunes event delivery to subscribers.
type EventsConfig struct {
	// Buffer is each subscription's channel capacity. When a subscriber
	// falls that far behind, further events for it are dropped (never
	// blocking writers) and counted in Subscription.Dropped and
	// Stats.EventsDropped. 0 means 1024.
	Buffer int
}

// validate fills defaults into a copy of c and checks it.
func (c Config) validate() (Config, error) {
	if c.Store == nil && c.Dir == "" {
		return c, fmt.Errorf("%w: Dir or Store must be set", core.ErrInvalidConfig)
	}
	if c.Encryption.Key != nil && c.Encryption.KeyProvider != nil {
		return c, fmt.Errorf("%w: set Encryption.Key or Encryption.KeyProvider, not both", core.ErrInvalidConfig)
	}
	if c.Encryption.Key != nil && len(c.Encryption.Key) != libsqlstore.KeySize {
		return c, fmt.Errorf("%w: Encryption.Key has %d bytes, want %d", core.ErrInvalidConfig, len(c.Encryption.Key), libsqlstore.KeySize)
	}
	if c.Store != nil && (c.Encryption.Key != nil || c.Encryption.KeyProvider != nil) {
		return c, fmt.Errorf("%w: Encryption applies to the default store, not to Config.Store", core.ErrInvalidConfig)
	}
	if c.MaxClockDrift < 0 {
		return c, fmt.Errorf("%w: negative MaxClockDrift", core.ErrInvalidConfig)
	}
	if c.Events.Buffer < 0 {
		return c, fmt.Errorf("%w: negative Events.Buffer", core.ErrInvalidConfig)
	}
	if c.SyncTimeout < 0 {
		return c, fmt.Errorf("%w: negative SyncTimeout", core.ErrInvalidConfig)
	}
	if err := c.Discovery.validate(); err != nil {
		return c, err
	}
	if c.SyncTimeout == 0 {
		c.SyncTimeout = 30 * time.Second
	}
	if c.Events.Buffer == 0 {
		c.Events.Buffer = 1024
	}
	if c.MaxClockDrift == 0 {
		c.MaxClockDrift = time.Minute
	}
	if c.Device.Name == "" {
		c.Device.Name = "device"
	}
	if c.Device.Type == "" {
		c.Device.Type = "unknown"
	}
	if c.Clock == nil {
		c.Clock = core.SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	typ, err := registry.ParseDeviceType(c.Device.Type)
	if err != nil {
		c.Logger.Warn("Device.Type is not a device type the registry records (unknown, phone, tablet, laptop, desktop, server): other devices see it as unknown", "type", c.Device.Type)
		typ = registry.TypeUnknown
	}
	c.devType = typ
	policies := DefaultPolicies()
	for name, p := range c.Collections {
		if err := core.ValidateKey(name, "", 0); err != nil {
			return c, fmt.Errorf("%w: collection %q: %v", core.ErrInvalidConfig, name, err)
		}
		if p.Interval < 0 {
			return c, fmt.Errorf("%w: collection %q: negative interval", core.ErrInvalidConfig, name)
		}
		policies[name] = p
	}
	c.Collections = policies
	c.plan = policy.NewPlanner(engine.PolicyTable(policies))
	return c, nil
}

// policy returns the policy of a collection.
func (c *Config) policy(collection string) Policy {
	return c.planner().Table().Policy(collection)
}

// planner returns the policy planner (built by validate; built here for a
// Config that was not validated).
func (c *Config) planner() *policy.Planner {
	if c.plan == nil {
		return policy.NewPlanner(engine.PolicyTable(c.Collections))
	}
	return c.plan
}
