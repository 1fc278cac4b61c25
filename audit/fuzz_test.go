package audit

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeDetail feeds hostile bytes (as found in a tampered detail
// column) to the decoder: it must never panic, and whatever it accepts must
// be valid and re-encode to exactly the input (the encoding is canonical).
func FuzzDecodeDetail(f *testing.F) {
	f.Add(EncodeDetail(nil))
	f.Add(EncodeDetail(Detail{Num("changes", 42), Text("collection", "profile")}))
	f.Add([]byte{0xff})
	f.Add([]byte{1, 3, 'a', 'b'})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDetail(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedDetail) {
				t.Fatalf("error %v does not wrap ErrMalformedDetail", err)
			}
			return
		}
		if err := validateDetail(d); err != nil {
			t.Fatalf("decoded an invalid detail: %v", err)
		}
		if got := EncodeDetail(d); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs: %x vs %x", got, b)
		}
	})
}
