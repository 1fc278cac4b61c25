package conflict

import (
	"errors"

	"github.com/devicemesh/federation/crdt"
)

// Validator is implemented by the strategies whose values have an encoding
// of their own (the typed collections). Validate returns an error wrapping
// ErrMalformed for a value that does not decode. The node calls it on
// every host write (Put, Tx.Put) to such a collection and refuses a value
// that does not decode with federation.ErrInvalidArgument, so a bad
// value is the writer's error at once instead of a warning at merge time
// on another device. An empty value is the empty profile, log, register
// or set; an embedding has no empty form. A deletion is not checked.
type Validator interface {
	Validate(value []byte) error
}

var (
	_ Validator = FieldMerge{}
	_ Validator = Chronological{}
	_ Validator = WeightedAverage{}
	_ Validator = VectorMerge{}
	_ Validator = Union{}
)

// Validate checks that value is a profile (see ProfileSet).
func (FieldMerge) Validate(value []byte) error {
	if _, err := decodeProfile(value); err != nil {
		return invalid(err)
	}
	return nil
}

// Validate checks that value is a crdt.Log encoding.
func (Chronological) Validate(value []byte) error {
	if _, err := crdt.DecodeLog(value); err != nil {
		return invalid(err)
	}
	return nil
}

// Validate checks that value is a crdt.Average encoding.
func (WeightedAverage) Validate(value []byte) error {
	if _, err := crdt.DecodeAverage(value); err != nil {
		return invalid(err)
	}
	return nil
}

// Validate checks that value is an Embedding encoding (Embedding.Encode).
func (VectorMerge) Validate(value []byte) error {
	if _, err := DecodeEmbedding(value); err != nil {
		return invalid(err)
	}
	return nil
}

// Validate checks that value is a crdt.GSet encoding (see EventsAppend).
func (Union) Validate(value []byte) error {
	if _, err := crdt.DecodeGSet(value); err != nil {
		return invalid(err)
	}
	return nil
}

// invalid wraps a decoder's error in ErrMalformed (once).
func invalid(err error) error {
	if errors.Is(err, ErrMalformed) {
		return err
	}
	return malformed(err)
}
