package merkle

import (
	"bytes"
	"errors"
	"github.com/devicemesh/federation/internal/allocbound"
	"strings"
	"testing"

	"github.com/devicemesh/federation/core"
)

func sampleRequest() *Request {
	return &Request{
		Salt: 0x0102030405060708, FPLen: 6, HasRoot: true, Root: Digest{1, 2, 3},
		Expand: []ExpandItem{{Prefix: Prefix{}, Depth: 2}, {Prefix: MakePrefix(1, 2, 3), Depth: 1}},
		List: []ListItem{
			{Prefix: MakePrefix(15)},
			{Prefix: MakePrefix(0, 0), HasAfter: true, After: "cursor"},
			{Prefix: MakePrefix(7), HasAfter: true, After: ""},
		},
	}
}

func TestRequestEncoding(t *testing.T) {
	// A minimal request, byte by byte as documented.
	r := &Request{Salt: 1, FPLen: 8, Expand: []ExpandItem{{Prefix: MakePrefix(0xa), Depth: 1}},
		List: []ListItem{{Prefix: MakePrefix(1, 2, 3), HasAfter: true, After: "k"}}}
	want := []byte{0xa1, 1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 1, 1, 0xa0, 1, 3, 0x12, 0x30, 2, 'k'}
	got, err := r.AppendBinary(nil)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("encoding %x (%v), want %x", got, err, want)
	}
	for _, r := range []*Request{r, sampleRequest(), {FPLen: 4}} {
		b, err := r.AppendBinary(nil)
		if err != nil || len(b) != r.Size() {
			t.Fatalf("encode: %v, %d bytes, Size %d", err, len(b), r.Size())
		}
		back, err := DecodeRequest(b)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := back.AppendBinary(nil)
		if !bytes.Equal(again, b) {
			t.Fatal("request does not survive a round trip")
		}
	}
}

func TestResponseEncoding(t *testing.T) {
	req := &Request{FPLen: 4, Expand: []ExpandItem{{Depth: 1}}, List: []ListItem{{}}}
	resp := &Response{Nodes: [][]NodeFP{make([]NodeFP, 16)}, Lists: []Listing{{Entries: []KeyFP{{Key: "ab", FP: 0x01020304}}, More: true}}}
	resp.Nodes[0][3] = NodeFP{Count: 300, FP: 0xdeadbeef}
	want := []byte{0xa2, 0, 0, 0, 0, 0xac, 0x02, 0xde, 0xad, 0xbe, 0xef}
	want = append(want, make([]byte, 12)...)
	want = append(want, 3, 2, 'a', 'b', 1, 2, 3, 4)
	got, err := resp.AppendBinary(nil, req)
	if err != nil || !bytes.Equal(got, want) || len(got) != resp.Size(4) {
		t.Fatalf("encoding %x (%v), want %x", got, err, want)
	}
	back, err := DecodeResponse(got, req)
	if err != nil {
		t.Fatal(err)
	}
	if back.Nodes[0][3] != resp.Nodes[0][3] || back.Lists[0].Entries[0] != resp.Lists[0].Entries[0] || !back.Lists[0].More {
		t.Fatalf("round trip: %+v", back)
	}
	conv, _ := (&Response{Converged: true}).AppendBinary(nil, req)
	if !bytes.Equal(conv, []byte{0xa2, 1}) {
		t.Fatalf("converged response %x", conv)
	}
}

func TestDecodeRequestRejects(t *testing.T) {
	valid, _ := sampleRequest().AppendBinary(nil)
	withCount := func(n uint64) []byte {
		b := []byte{0xa1, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0}
		b = appendUvarintForTest(b, n)
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"wrong tag", append([]byte{0xa2}, valid[1:]...), ErrMalformed},
		{"truncated", valid[:len(valid)-1], ErrMalformed},
		{"trailing", append(append([]byte{}, valid...), 0), ErrMalformed},
		{"bad flags", append(append([]byte{}, valid[:10]...), 2), ErrMalformed},
		{"fp too short", []byte{0xa1, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0}, ErrLimit},
		{"fp too long", []byte{0xa1, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0}, ErrLimit},
		{"huge expand count", withCount(1 << 40), ErrLimit},
		{"expand count beyond bytes", withCount(100), ErrMalformed},
		{"non-minimal varint", append(withCount(0)[:11], 0x80, 0x00, 0), ErrMalformed},
		{"depth 0", append(withCount(1), 0, 0, 0), ErrLimit},
		{"depth 4", append(withCount(1), 4, 0, 0), ErrLimit},
		{"too deep", append(withCount(1), 2, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0), ErrLimit},
		{"prefix of 17 nibbles", append(withCount(1), 1, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), ErrMalformed},
		{"non-canonical prefix", append(withCount(1), 1, 1, 0x01, 0), ErrMalformed},
		{"too many summaries", func() []byte {
			b := withCount(17)
			for i := 0; i < 17; i++ {
				b = append(b, 3, 0)
			}
			return append(b, 0)
		}(), ErrLimit},
		{"oversize cursor", func() []byte {
			b := append(withCount(0), 1, 0)
			b = appendUvarintForTest(b, core.MaxKeyLen+2)
			return append(b, strings.Repeat("k", core.MaxKeyLen+1)...)
		}(), ErrLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRequest(tc.b)
			if !errors.Is(err, tc.want) || !errors.Is(err, core.ErrProtocol) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodeResponseRejects(t *testing.T) {
	req := &Request{FPLen: 4, Expand: []ExpandItem{{Depth: 1}}, List: []ListItem{{}}}
	good := append([]byte{0xa2, 0}, make([]byte, 16)...)
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"wrong tag", []byte{0xa1, 1}, ErrMalformed},
		{"converged with trailing", []byte{0xa2, 1, 0}, ErrMalformed},
		{"bad flags", []byte{0xa2, 3}, ErrMalformed},
		{"missing nodes", []byte{0xa2, 0, 0}, ErrMalformed},
		{"missing listing", good, ErrMalformed},
		{"listing count beyond bytes", append(append([]byte{}, good...), 0xc8, 0x01), ErrMalformed},
		{"huge listing count", append(append([]byte{}, good...), 0xfe, 0xff, 0xff, 0xff, 0x0f), ErrLimit},
		{"oversize key", func() []byte {
			b := append(append([]byte{}, good...), 2)
			b = appendUvarintForTest(b, core.MaxKeyLen+1)
			return append(b, make([]byte, core.MaxKeyLen+5)...)
		}(), ErrLimit},
		{"trailing", append(append([]byte{}, good...), 0, 0), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeResponse(tc.b, req)
			if !errors.Is(err, tc.want) || !errors.Is(err, core.ErrProtocol) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := DecodeResponse(append(good, 0), req); err != nil {
		t.Fatalf("valid response refused: %v", err)
	}
	if _, err := DecodeResponse(good, &Request{}); !errors.Is(err, ErrLimit) {
		t.Fatalf("invalid request accepted: %v", err)
	}
}

func TestRestoreRejects(t *testing.T) {
	tr := New()
	for i := 0; i < 200; i++ {
		tr.Set(keyOf(i), digestOf(uint64(i)))
	}
	snap := tr.AppendSnapshot(nil)
	flip := func(i int) []byte {
		b := append([]byte{}, snap...)
		b[i] ^= 1
		return b
	}
	swapped := New().AppendSnapshot(nil)[:4]
	swapped = append(swapped, 2)
	e := tr.Keys(Prefix{})
	for _, x := range []Entry{e[1], e[0]} {
		swapped = append(swapped, byte(len(x.Key)))
		swapped = append(swapped, x.Key...)
		swapped = append(swapped, x.Hash[:]...)
	}
	swapped = append(swapped, make([]byte, 32)...)
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"bad magic", flip(0)},
		{"truncated", snap[:len(snap)-1]},
		{"trailing", append(append([]byte{}, snap...), 0)},
		{"flipped entry hash", flip(len(snap) - 40)},
		{"flipped root", flip(len(snap) - 1)},
		{"out of order", swapped},
		{"huge count", []byte("MKS1\xff\xff\xff\xff\x0f")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Restore(tc.b); !errors.Is(err, ErrCorrupt) || !errors.Is(err, core.ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func appendUvarintForTest(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// Decoders never panic, and whatever they accept re-encodes to the same
// bytes (the encoding is canonical). A responder answers whatever decodes,
// within the response bound.
func FuzzDecodeRequest(f *testing.F) {
	b, _ := sampleRequest().AppendBinary(nil)
	f.Add(b)
	tr := fuzzTree()
	f.Fuzz(func(t *testing.T, b []byte) {
		var r *Request
		var err error
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { r, err = DecodeRequest(b) })
		if err != nil {
			return
		}
		again, err := r.AppendBinary(nil)
		if err != nil || !bytes.Equal(again, b) || r.Size() != len(b) {
			t.Fatalf("accepted %x but re-encodes to %x (%v)", b, again, err)
		}
		resp, err := tr.Respond(r)
		if err != nil {
			t.Fatalf("valid request refused: %v", err)
		}
		out, err := resp.AppendBinary(nil, r)
		if err != nil || len(out) != resp.Size(r.FPLen) {
			t.Fatalf("response does not encode: %v", err)
		}
		if len(out) > 2+MaxSummaries*(1+MaxFPLen)+ListBudget+core.MaxKeyLen+16+MaxListItems*3 {
			t.Fatalf("response of %d bytes", len(out))
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	req, _ := sampleRequest().AppendBinary(nil)
	tr := fuzzTree()
	r, _ := DecodeRequest(req)
	resp, _ := tr.Respond(r)
	b, _ := resp.AppendBinary(nil, r)
	f.Add(req, b)
	f.Fuzz(func(t *testing.T, reqb, b []byte) {
		req, err := DecodeRequest(reqb)
		if err != nil {
			return
		}
		var resp *Response
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { resp, err = DecodeResponse(b, req) })
		if err != nil {
			return
		}
		again, err := resp.AppendBinary(nil, req)
		if err != nil || !bytes.Equal(again, b) || resp.Size(req.FPLen) != len(b) {
			t.Fatalf("accepted %x but re-encodes to %x (%v)", b, again, err)
		}
	})
}

// A hostile response to a reconciler's request yields an error or a
// result, never a panic.
func FuzzReconcileResponse(f *testing.F) {
	tr := fuzzTree()
	r := NewReconciler(tr, Config{Salt: 1, FPLen: 4, RoundBudget: -1})
	req := r.Start()
	other := New()
	other.Set("x", digestOf(1))
	resp, _ := other.Respond(req)
	b, _ := resp.AppendBinary(nil, req)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReconciler(tr, Config{Salt: 1, FPLen: 4, RoundBudget: -1})
		req := r.Start()
		for i := 0; i < 4 && req != nil; i++ {
			resp, err := DecodeResponse(b, req)
			if err != nil {
				return
			}
			if req, err = r.Next(resp); err != nil {
				return
			}
		}
	})
}

func FuzzRestore(f *testing.F) {
	f.Add(fuzzTree().AppendSnapshot(nil))
	f.Add(New().AppendSnapshot(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var tr *Tree
		var err error
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { tr, err = Restore(b) })
		if err != nil {
			return
		}
		if again := tr.AppendSnapshot(nil); !bytes.Equal(again, b) {
			t.Fatal("accepted snapshot re-encodes differently")
		}
	})
}

// perByte bounds what the decoders of this package (DecodeRequest,
// DecodeResponse, Restore) may allocate per input byte, plus
// allocbound.Slack.
const perByte = 16

// TestDecodersBoundedByInput: a hostile count, or a short answer to a
// deep request, costs no more than the bytes that carry it.
func TestDecodersBoundedByInput(t *testing.T) {
	req := &Request{FPLen: 4, Expand: []ExpandItem{{Depth: 3}, {Depth: 3}}}
	for _, b := range [][]byte{
		{tagResponse, 0},       // no answers at all to 2 x 4096 nodes
		{tagResponse, 0, 0, 0}, // two bytes for 8192 nodes
	} {
		allocbound.Check(t, b, perByte, allocbound.Slack, func() {
			if _, err := DecodeResponse(b, req); err == nil {
				t.Fatalf("%x decoded", b)
			}
		})
	}
	tr := fuzzTree()
	for _, b := range [][]byte{tr.AppendSnapshot(nil), append([]byte(snapshotMagic), 0xff, 0xff, 0xff, 0x7f)} {
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { _, _ = Restore(b) })
	}
}

func fuzzTree() *Tree {
	tr := New()
	for i := 0; i < 100; i++ {
		tr.Set(keyOf(i), digestOf(uint64(i)))
	}
	return tr
}
