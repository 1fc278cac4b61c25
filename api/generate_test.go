package api

import (
	"os/exec"
	"testing"
)

// TestGeneratedCodeUpToDate regenerates the code from the schema into a
// temporary directory and fails when it differs from the committed code.
// It needs protoc and the two Go plugins (see generate.sh); .ci/run
// installs them.
func TestGeneratedCodeUpToDate(t *testing.T) {
	out, err := exec.Command("bash", "generate.sh", "-check").CombinedOutput()
	if err != nil {
		t.Fatalf("api/generate.sh -check: %v\n%s", err, out)
	}
}
