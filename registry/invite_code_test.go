package registry

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/devicemesh/federation/identity"
)

func TestInvitationFromCode(t *testing.T) {
	issuer, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := NewInvitation(issuer, []string{"10.0.0.1:9"}, time.Now().Add(time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := InvitationFromCode(strings.ToLower(inv.Code()), issuer.PublicKey(), []string{"10.0.0.2:9"}, inv.Expires)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key() != inv.Key() || got.Issuer != inv.Issuer || got.Code() != inv.Code() {
		t.Fatal("the rebuilt invitation differs from the issuer's")
	}
	bad := []byte(inv.Code())
	bad[0] ^= 1
	if _, err := InvitationFromCode(string(bad), issuer.PublicKey(), nil, inv.Expires); !errors.Is(err, ErrMalformedCode) {
		t.Fatalf("a mistyped code: %v", err)
	}
}
