package federation

import (
	"fmt"
	"strings"

	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
)

// checkCollection refuses a collection name that Config.StrictCollections
// does not allow (the SDK's own collections, under replica.InternalPrefix,
// are always known: reads of them are allowed, writes refused elsewhere).
func (n *Node) checkCollection(collection string) error {
	if !n.cfg.StrictCollections {
		return nil
	}
	if _, ok := n.cfg.Collections[collection]; ok || strings.HasPrefix(collection, replica.InternalPrefix) {
		return nil
	}
	return fmt.Errorf("%w: unknown collection %q (Config.StrictCollections: name it in Config.Collections)", ErrInvalidArgument, collection)
}

// checkWrite checks a host write of value to (collection, key) before it
// is buffered: the name rules, the collection (StrictCollections) and the
// value's encoding when the collection's resolver has one.
func (n *Node) checkWrite(collection, key string, value []byte) error {
	if err := core.ValidateHostKey(collection, key, len(value)); err != nil {
		return fmt.Errorf("put %s/%q: %w", collection, key, err)
	}
	if err := n.checkCollection(collection); err != nil {
		return err
	}
	if v, ok := n.cfg.policy(collection).Resolver.(conflict.Validator); ok {
		if err := v.Validate(value); err != nil {
			return fmt.Errorf("put %s/%q: %w: %w", collection, key, ErrInvalidArgument, err)
		}
	}
	return nil
}

// Limits on what a host writes (see "Keys and values" in the package
// documentation). Put and Tx.Put refuse anything beyond them with
// ErrInvalidArgument.
const (
	// MaxCollectionLen is the longest collection name, in bytes.
	MaxCollectionLen = core.MaxCollectionLen
	// MaxKeyLen is the longest record key, in bytes.
	MaxKeyLen = core.MaxKeyLen
	// MaxValueLen is the largest record value, in bytes.
	MaxValueLen = core.MaxValueLen
)
