package daemon

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ErrUnknownField reports a request that sets a field the schema does not
// have (a typo, or a client built against another schema).
var ErrUnknownField = errors.New("unknown field")

// Decode unmarshals a request in binary protobuf (json false) or protobuf
// JSON (json true), refusing unknown fields: a field the schema does not
// have is a mistake worth reporting, not something to drop silently.
func Decode(data []byte, m proto.Message, json bool) error {
	if json {
		if err := (protojson.UnmarshalOptions{}).Unmarshal(data, m); err != nil {
			return fmt.Errorf("decode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
		return nil
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return err
	}
	return checkUnknown(m.ProtoReflect())
}

// checkUnknown fails when m or a message inside it holds unknown fields.
func checkUnknown(m protoreflect.Message) error {
	if len(m.GetUnknown()) > 0 {
		return fmt.Errorf("%w in %s (field numbers the schema does not define)", ErrUnknownField, m.Descriptor().FullName())
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = checkUnknown(l.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = checkUnknown(mv.Message())
				return err == nil
			})
		case fd.Message() != nil && !fd.IsMap():
			err = checkUnknown(v.Message())
		}
		return err == nil
	})
	return err
}

// strictCodec is a Connect codec that decodes with Decode.
type strictCodec struct {
	name string
	json bool
}

var _ connect.Codec = strictCodec{}

func (c strictCodec) Name() string { return c.name }

func (c strictCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", v)
	}
	if c.json {
		return protojson.Marshal(m)
	}
	return proto.Marshal(m)
}

func (c strictCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", v)
	}
	if c.json && len(data) == 0 {
		return errors.New("empty JSON payload")
	}
	return Decode(data, m, c.json)
}
