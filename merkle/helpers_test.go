package merkle

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// tb is what the helpers need from *testing.T, *testing.B and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// digestOf makes a distinct record digest from a number, for tests.
func digestOf(v uint64) Digest {
	var d Digest
	binary.LittleEndian.PutUint64(d[:], v)
	d[31] = 0x5a
	return d
}

func keyOf(i int) string { return fmt.Sprintf("key-%08d", i) }

// exchange runs a full reconciliation of local against remote, passing
// every message through its binary encoding as the network would.
func exchange(t tb, local, remote *Tree, cfg Config) (Diff, Stats) {
	t.Helper()
	r := NewReconciler(local, cfg)
	req := r.Start()
	for req != nil {
		wireReq, err := req.AppendBinary(nil)
		if err != nil {
			t.Fatalf("encode request: %v", err)
		}
		if len(wireReq) != req.Size() {
			t.Fatalf("request Size %d, encoded %d", req.Size(), len(wireReq))
		}
		got, err := DecodeRequest(wireReq)
		if err != nil {
			t.Fatalf("decode request: %v", err)
		}
		resp, err := remote.Respond(got)
		if err != nil {
			t.Fatalf("respond: %v", err)
		}
		wireResp, err := resp.AppendBinary(nil, got)
		if err != nil {
			t.Fatalf("encode response: %v", err)
		}
		if len(wireResp) != resp.Size(got.FPLen) {
			t.Fatalf("response Size %d, encoded %d", resp.Size(got.FPLen), len(wireResp))
		}
		back, err := DecodeResponse(wireResp, req)
		if err != nil {
			t.Fatalf("decode response: %v", err)
		}
		if req, err = r.Next(back); err != nil {
			t.Fatalf("next: %v", err)
		}
	}
	if !r.Done() {
		t.Fatal("reconciler not done after nil request")
	}
	return r.Diff(), r.Stats()
}

func sortStrings(s []string) { slices.Sort(s) }
