package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/devicemesh/federation/core"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, TypeNoise, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(&buf, TypeAppMin+3, nil); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFrame(&buf, nil, 0)
	if err != nil || f.Type != TypeNoise || string(f.Payload) != "hello" {
		t.Fatalf("first frame = %v %q %v", f.Type, f.Payload, err)
	}
	f, err = ReadFrame(&buf, nil, 0)
	if err != nil || f.Type != TypeAppMin+3 || len(f.Payload) != 0 {
		t.Fatalf("second frame = %v %q %v", f.Type, f.Payload, err)
	}
	if _, err := ReadFrame(&buf, nil, 0); err != io.EOF {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
}

func TestReadFrameRefuses(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		limit int
		want  error
	}{
		{"type zero", []byte{0, 0, 0, 0, 0}, 0, core.ErrProtocol},
		{"reserved type", []byte{0x0f, 0, 0, 0, 0}, 0, core.ErrProtocol},
		{"length over limit", []byte{0x10, 0, 0, 0x04, 0x01}, 1024, core.ErrFrameTooLarge},
		{"length 4 GiB", []byte{0x10, 0xff, 0xff, 0xff, 0xff}, MaxFrameSize * 4, core.ErrFrameTooLarge},
		{"short header", []byte{0x10, 0}, 0, core.ErrProtocol},
		{"short payload", []byte{0x10, 0, 0, 0, 4, 'a'}, 0, core.ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.in), nil, tt.limit)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAppendFrameRefuses(t *testing.T) {
	if _, err := AppendFrame(nil, 0, nil); !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("type 0: %v", err)
	}
	if _, err := AppendFrame(nil, TypeAppMin, make([]byte, MaxFrameSize+1)); !errors.Is(err, core.ErrFrameTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
}

// A frame built in place with StartFrame and FinishFrame reads back like
// one written by WriteFrame, and the same refusals apply.
func TestStartFinishFrame(t *testing.T) {
	b := StartFrame([]byte("x"), TypeAppMin+1)
	b = append(b, "payload"...)
	if err := FinishFrame(b[1:]); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := WriteFrame(&want, TypeAppMin+1, []byte("payload")); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[1:], want.Bytes()) {
		t.Fatalf("in place % x, WriteFrame % x", b[1:], want.Bytes())
	}
	if err := FinishFrame(StartFrame(nil, 0)); !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("type 0: %v", err)
	}
	if err := FinishFrame([]byte{byte(TypeAppMin)}); !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("short: %v", err)
	}
	big := append(StartFrame(nil, TypeAppMin), make([]byte, MaxFrameSize+1)...)
	if err := FinishFrame(big); !errors.Is(err, core.ErrFrameTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
}

func TestHello(t *testing.T) {
	h := Hello{Min: 1, Max: 3, Pattern: PatternIK}
	got, err := DecodeHello(h.Encode())
	if err != nil || got != h {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	if v, err := h.Select(2, 5); err != nil || v != 3 {
		t.Fatalf("select 2-5 = %d, %v", v, err)
	}
	if _, err := h.Select(4, 5); !errors.Is(err, core.ErrVersionMismatch) {
		t.Fatalf("select 4-5: %v, want version mismatch", err)
	}
	bad := [][]byte{
		nil,
		Hello{Min: 0, Max: 1, Pattern: PatternXX}.Encode(),
		Hello{Min: 2, Max: 1, Pattern: PatternXX}.Encode(),
		Hello{Min: 1, Max: 1, Pattern: 9}.Encode(),
		append([]byte("XXXX"), Hello{Min: 1, Max: 1, Pattern: PatternXX}.Encode()[4:]...),
	}
	for i, b := range bad {
		if _, err := DecodeHello(b); !errors.Is(err, core.ErrProtocol) {
			t.Errorf("bad hello %d: %v", i, err)
		}
	}
}

func TestPayloadAndReject(t *testing.T) {
	p := Payload{Version: 7, Key: core.PublicKey{1, 2, 3}}
	if got, err := DecodePayload(p.Encode()); err != nil || got != p {
		t.Fatalf("payload round trip = %+v, %v", got, err)
	}
	if _, err := DecodePayload(make([]byte, 33)); !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("short payload: %v", err)
	}
	r := Reject{Code: RejectUnauthorized, Reason: "revoked"}
	got, err := DecodeReject(r.Encode())
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("reject round trip = %+v, %v", got, err)
	}
	rn := Reject{Code: RejectUnauthorized, Reason: "revoked", Notice: []byte("the signed revocation")}
	if gotN, err := DecodeReject(rn.Encode()); err != nil || !reflect.DeepEqual(gotN, rn) {
		t.Fatalf("reject with notice round trip = %+v, %v", gotN, err)
	}
	for _, bad := range [][]byte{{byte(RejectUnauthorized) | 0x80}, {byte(RejectUnauthorized) | 0x80, 3, 'a', 'b', 'c'}, {byte(RejectUnauthorized) | 0x80, 201}} {
		if _, err := DecodeReject(bad); !errors.Is(err, core.ErrProtocol) {
			t.Fatalf("reject %x: %v", bad, err)
		}
	}
	if !errors.Is(got.Err(), core.ErrUnauthorized) {
		t.Fatalf("reject error %v does not wrap ErrUnauthorized", got.Err())
	}
	if CodeFor(got.Err()) != RejectUnauthorized || CodeFor(ErrBusy) != RejectBusy {
		t.Fatal("CodeFor does not invert Sentinel")
	}
	if _, err := DecodeReject([]byte{9}); !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("bad code: %v", err)
	}
	long := Reject{Code: RejectBusy, Reason: string(make([]byte, 500))}.Encode()
	if len(long) != 1+MaxReasonLen {
		t.Fatalf("long reason encoded to %d bytes", len(long))
	}
}

func TestExpect(t *testing.T) {
	var buf bytes.Buffer
	_ = WriteFrame(&buf, TypeReject, Reject{Code: RejectVersion}.Encode())
	if _, err := Expect(&buf, TypeNoise, MaxHandshakeFrame); !errors.Is(err, core.ErrVersionMismatch) {
		t.Fatalf("reject: %v", err)
	}
	_ = WriteFrame(&buf, TypeAccept, nil)
	if _, err := Expect(&buf, TypeNoise, MaxHandshakeFrame); !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("wrong type: %v", err)
	}
}

func TestStreamOpen(t *testing.T) {
	if err := DecodeStreamOpen(EncodeStreamOpen(1), 1); err != nil {
		t.Fatal(err)
	}
	if err := DecodeStreamOpen(EncodeStreamOpen(2), 1); !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("version 2 on a version 1 session: %v", err)
	}
}
