package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestConfigFile: settings come from the JSON file, flags given on the
// command line win over it, and the defaults fill the rest.
func TestConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fedrelay.json")
	if err := os.WriteFile(path, []byte(`{"udp": ":5000", "nats": "nats://a:4222", "conn-rate": 1000}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parse([]string{"-config", path, "-udp", ":6000"})
	if err != nil {
		t.Fatal(err)
	}
	if c.UDP != ":6000" || c.NATS != "nats://a:4222" || c.ConnRate != 1000 || c.TLS != ":4443" || c.DataUDP != ":4444" {
		t.Fatalf("parsed %+v", c)
	}
	if _, err := parse([]string{"-config", filepath.Join(t.TempDir(), "missing.json")}); err == nil {
		t.Fatal("a missing config file is not an error")
	}
}
