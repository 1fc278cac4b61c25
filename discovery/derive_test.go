package discovery

import (
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
)

func secret(b byte, gen uint64) registry.Secret {
	s := registry.Secret{Generation: gen}
	for i := range s.Key {
		s.Key[i] = b + byte(i)
	}
	return s
}

func TestEpochBoundaries(t *testing.T) {
	p := 10 * time.Minute
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := Epoch(t0, p)
	require.Equal(t, e, Epoch(t0.Add(p-time.Millisecond), p))
	require.Equal(t, e+1, Epoch(t0.Add(p), p))
	require.True(t, EpochStart(e, p).Equal(t0))
	require.Equal(t, Epoch(t0, DefaultPeriod), Epoch(t0, 0), "zero period means DefaultPeriod")
	require.Equal(t, uint64(0), Epoch(time.Unix(-5, 0), p))

	require.Equal(t, []uint64{e}, Epochs(t0.Add(p/2), p, time.Minute))
	require.Equal(t, []uint64{e - 1, e}, Epochs(t0.Add(30*time.Second), p, time.Minute))
	require.Equal(t, []uint64{e, e + 1}, Epochs(t0.Add(p-30*time.Second), p, time.Minute))
}

func TestDeriveSeparatesEveryInput(t *testing.T) {
	base := secret(1, 3)
	l := Label{Purpose: "mdns/service", Epoch: 42}
	ref := Name(base, l)
	require.Regexp(t, regexp.MustCompile(`^[a-z][a-z2-7]{15}$`), ref)
	require.Equal(t, ref, Name(base, l), "deterministic")

	otherKey := base
	otherKey.Key[31] ^= 1
	nextGen := base
	nextGen.Generation++
	var dev core.DeviceID
	dev[0] = 9
	variants := map[string]string{
		"key":        Name(otherKey, l),
		"generation": Name(nextGen, l),
		"purpose":    Name(base, Label{Purpose: "mdns/instance", Epoch: 42}),
		"epoch":      Name(base, Label{Purpose: "mdns/service", Epoch: 43}),
		"device":     Name(base, Label{Purpose: "mdns/service", Epoch: 42, Device: dev}),
	}
	seen := map[string]string{ref: "ref"}
	for what, n := range variants {
		require.NotEqual(t, ref, n, "changing the %s must change the name", what)
		_, dup := seen[n]
		require.False(t, dup, "%s collides", what)
		seen[n] = what
	}
	// Purpose and epoch are length-separated: "a"+epoch vs "a\x00..." cannot collide.
	require.NotEqual(t, Target(base, Label{Purpose: "a"}), Target(base, Label{Purpose: "a\x00"}))
	k1, k2 := Key(base, l), Key(base, Label{Purpose: "mdns/service", Epoch: 42})
	require.Equal(t, k1, k2)
}

func TestNamesOverADayShareNothing(t *testing.T) {
	sec := secret(7, 1)
	p := 15 * time.Minute
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	for d := time.Duration(0); d < 24*time.Hour; d += p {
		n := Name(sec, Label{Purpose: "mdns/service", Epoch: Epoch(start.Add(d), p)})
		require.False(t, seen[n], "name repeats within a day")
		seen[n] = true
	}
	require.Len(t, seen, 96)
}
