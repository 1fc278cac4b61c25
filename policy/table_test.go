package policy_test

import (
	"errors"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/policy"
	"github.com/stretchr/testify/require"
)

var (
	phone  = core.DeviceID{1}
	laptop = core.DeviceID{2}
)

func ptr[T any](v T) *T { return &v }

// table is the node's table in miniature: standard collections set, an
// internal prefix reserved local-only, the registry pinned.
func table() *policy.Table {
	t := policy.NewTable(core.Policy{Priority: core.PriorityMedium, Mode: core.ModeImmediate})
	t.Set("profile", core.Policy{Priority: core.PriorityHigh, Mode: core.ModeImmediate})
	t.Set("analytics", core.Policy{Priority: core.PriorityLow, Mode: core.ModePeriodic})
	t.Set("media", core.Policy{Priority: core.PriorityLow, Mode: core.ModeOnDemand})
	t.Set("cache", core.Policy{Priority: core.PriorityNone, Mode: core.ModeLocalOnly})
	t.Set("_fed.mine", core.Policy{Priority: core.PriorityHigh, Mode: core.ModeImmediate})
	t.Reserve("_fed.", core.Policy{Priority: core.PriorityNone, Mode: core.ModeLocalOnly})
	t.Reserve("_fed.sync.", core.Policy{Priority: core.PriorityLow, Mode: core.ModeImmediate})
	t.Pin("_fed.registry", core.Policy{Priority: core.PriorityHigh, Mode: core.ModeImmediate})
	return t
}

func TestTablePolicy(t *testing.T) {
	tab := table()
	for _, tc := range []struct {
		collection string
		priority   core.Priority
		mode       core.Mode
	}{
		{"profile", core.PriorityHigh, core.ModeImmediate},           // set
		{"analytics", core.PriorityLow, core.ModePeriodic},           // set
		{"media", core.PriorityLow, core.ModeOnDemand},               // set
		{"cache", core.PriorityNone, core.ModeLocalOnly},             // set
		{"unknown", core.PriorityMedium, core.ModeImmediate},         // fallback
		{"profile ", core.PriorityMedium, core.ModeImmediate},        // names are exact
		{"analytics/2026", core.PriorityMedium, core.ModeImmediate},  // no implicit prefixes
		{"_fed.mine", core.PriorityNone, core.ModeLocalOnly},         // reserved beats set
		{"_fed.trees", core.PriorityNone, core.ModeLocalOnly},        // reserved
		{"_fed.", core.PriorityNone, core.ModeLocalOnly},             // the prefix itself
		{"_fed", core.PriorityMedium, core.ModeImmediate},            // not under the prefix
		{"_FED.trees", core.PriorityMedium, core.ModeImmediate},      // case matters
		{"_fed.sync.x", core.PriorityLow, core.ModeImmediate},        // longer prefix wins
		{"_fed.sync", core.PriorityNone, core.ModeLocalOnly},         // short of the longer prefix
		{"_fed.registry", core.PriorityHigh, core.ModeImmediate},     // pin beats reserved
		{"_fed.registryx", core.PriorityNone, core.ModeLocalOnly},    // a pin is exact
		{"_fed.sync.registry", core.PriorityLow, core.ModeImmediate}, // pins are by full name
	} {
		p := tab.Policy(tc.collection)
		require.Equal(t, tc.priority, p.Priority, tc.collection)
		require.Equal(t, tc.mode, p.Mode, tc.collection)
	}
	require.Equal(t, []string{"_fed.mine", "_fed.registry", "analytics", "cache", "media", "profile"}, tab.Collections())
}

func TestDecideOverrides(t *testing.T) {
	tab := table()
	tab.Set("conversations", core.Policy{Priority: core.PriorityMedium, Mode: core.ModeImmediate})
	tab.SetWeight("conversations", 3)
	tab.SetDevice(phone, policy.Device{Collections: map[string]policy.Override{
		"media":         {Mode: ptr(core.ModeLocalOnly)},                                  // keep media off the phone
		"conversations": {Priority: ptr(core.PriorityHigh), Mode: ptr(core.ModePeriodic)}, // periodic, high
		"cache":         {Mode: ptr(core.ModeImmediate)},                                  // may not send local-only data
		"_fed.registry": {Mode: ptr(core.ModeLocalOnly)},                                  // may not touch a pin
		"_fed.trees":    {Mode: ptr(core.ModeImmediate)},                                  // nor a reserved local-only name
		"profile":       {},                                                               // nil fields keep the table's
	}})
	pl := policy.NewPlanner(tab)
	for _, tc := range []struct {
		peer       core.DeviceID
		collection string
		want       policy.Decision
	}{
		{phone, "media", policy.Decision{Collection: "media", Priority: core.PriorityLow, Mode: core.ModeLocalOnly, Weight: 1, Withheld: true}},
		{laptop, "media", policy.Decision{Collection: "media", Priority: core.PriorityLow, Mode: core.ModeOnDemand, Weight: 1}},
		{phone, "conversations", policy.Decision{Collection: "conversations", Priority: core.PriorityHigh, Mode: core.ModePeriodic, Interval: policy.DefaultInterval, Weight: 3}},
		{laptop, "conversations", policy.Decision{Collection: "conversations", Priority: core.PriorityMedium, Mode: core.ModeImmediate, Weight: 3}},
		{phone, "cache", policy.Decision{Collection: "cache", Priority: core.PriorityNone, Mode: core.ModeLocalOnly, Weight: 1}},
		{phone, "_fed.registry", policy.Decision{Collection: "_fed.registry", Priority: core.PriorityHigh, Mode: core.ModeImmediate, Weight: 1}},
		{phone, "_fed.trees", policy.Decision{Collection: "_fed.trees", Priority: core.PriorityNone, Mode: core.ModeLocalOnly, Weight: 1}},
		{phone, "profile", policy.Decision{Collection: "profile", Priority: core.PriorityHigh, Mode: core.ModeImmediate, Weight: 1}},
		{phone, "analytics", policy.Decision{Collection: "analytics", Priority: core.PriorityLow, Mode: core.ModePeriodic, Interval: policy.DefaultInterval, Weight: 1}},
	} {
		got := pl.Decide(tc.peer, tc.collection)
		require.Equal(t, tc.want, got, "%s to %s", tc.collection, tc.peer.Short())
		require.Equal(t, tc.want.Mode != core.ModeLocalOnly, pl.Admit(tc.peer, tc.collection))
		require.Equal(t, tc.want.Mode, pl.When(tc.peer, tc.collection))
		require.Equal(t, tc.want.Priority, pl.Priority(tc.peer, tc.collection))
	}
	// The table's own policy (resolver, Syncs) ignores device overrides.
	require.Equal(t, core.ModeOnDemand, tab.Policy("media").Mode)
	// Removing the overrides restores the table.
	tab.SetDevice(phone, policy.Device{})
	require.True(t, pl.Admit(phone, "media"))
}

func TestCarry(t *testing.T) {
	tab := table()
	tab.Set("conversations", core.Policy{Priority: core.PriorityMedium, Mode: core.ModeImmediate})
	tab.SetDevice(laptop, policy.Device{Collections: map[string]policy.Override{
		"conversations": {Mode: ptr(core.ModeSummary)},
		"profile":       {Mode: ptr(core.ModeLocalOnly)},
	}})
	pl := policy.NewPlanner(tab)
	for _, summary := range []bool{false, true} {
		require.Equal(t, policy.CarryNothing, pl.Decide(phone, "cache").Carry(summary))
		require.Equal(t, policy.CarryNothing, pl.Decide(phone, "_fed.trees").Carry(summary))
		require.Equal(t, policy.CarryValue, pl.Decide(phone, "profile").Carry(summary))
		require.Equal(t, policy.CarryValue, pl.Decide(phone, "conversations").Carry(summary))
		// On-demand: stubs, summaries or not.
		require.Equal(t, policy.CarryDigest, pl.Decide(phone, "media").Carry(summary))
		// An override that keeps profile from the laptop: stubs.
		require.Equal(t, policy.CarryDigest, pl.Decide(laptop, "profile").Carry(summary))
	}
	// Summary towards the laptop: whole for summaries only.
	require.Equal(t, policy.CarryDigest, pl.Decide(laptop, "conversations").Carry(false))
	require.Equal(t, policy.CarryValue, pl.Decide(laptop, "conversations").Carry(true))
	require.False(t, pl.Decide(laptop, "conversations").WantsValues())
	require.True(t, pl.Decide(phone, "conversations").WantsValues())
	require.False(t, pl.Decide(phone, "media").WantsValues())
	// DecideDevice applies a device policy given in place of the table's.
	dev := policy.Device{Collections: map[string]policy.Override{"media": {Mode: ptr(core.ModeImmediate)}}}
	require.True(t, pl.DecideDevice(dev, "media").WantsValues())
	require.False(t, pl.DecideDevice(policy.Device{}, "media").WantsValues())
	require.Equal(t, "digest", policy.CarryDigest.String())
}

func TestDue(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	periodic := policy.Decision{Mode: core.ModePeriodic, Interval: 5 * time.Minute}
	for _, tc := range []struct {
		name      string
		d         policy.Decision
		last, now time.Time
		due       bool
		next      time.Time
	}{
		{"immediate", policy.Decision{Mode: core.ModeImmediate}, t0, t0, true, t0},
		{"on-demand travels as immediate for now", policy.Decision{Mode: core.ModeOnDemand}, t0, t0, true, t0},
		{"local-only never", policy.Decision{Mode: core.ModeLocalOnly}, time.Time{}, t0, false, time.Time{}},
		{"periodic, never flushed", periodic, time.Time{}, t0, true, t0},
		{"periodic, within the interval", periodic, t0, t0.Add(time.Minute), false, t0.Add(5 * time.Minute)},
		{"periodic, just before", periodic, t0, t0.Add(5*time.Minute - 1), false, t0.Add(5 * time.Minute)},
		{"periodic, at the interval", periodic, t0, t0.Add(5 * time.Minute), true, t0.Add(5 * time.Minute)},
		{"periodic, clock went back", periodic, t0, t0.Add(-time.Hour), false, t0.Add(5 * time.Minute)},
	} {
		due, next := tc.d.Due(tc.last, tc.now)
		require.Equal(t, tc.due, due, tc.name)
		require.True(t, tc.next.Equal(next), "%s: next %v, want %v", tc.name, next, tc.next)
	}
}

func TestSort(t *testing.T) {
	pl := policy.NewPlanner(table())
	cs := []string{"cache", "media", "unknown", "analytics", "profile", "_fed.registry", "_fed.trees", "b", "a"}
	pl.Sort(phone, cs)
	require.Equal(t, []string{"_fed.registry", "profile", "a", "b", "unknown", "analytics", "media", "_fed.trees", "cache"}, cs)
}

func TestNilTable(t *testing.T) {
	pl := policy.NewPlanner(nil)
	d := pl.Decide(phone, "anything")
	require.Equal(t, core.PriorityMedium, d.Priority)
	require.Equal(t, core.ModeImmediate, d.Mode)
}

func TestParseDevice(t *testing.T) {
	d, err := policy.ParseDevice([]byte(`{"collections": {"media": {"mode": "local-only"},
		"conversations": {"priority": "high", "mode": "periodic"}}}`))
	require.NoError(t, err)
	require.Equal(t, core.ModeLocalOnly, *d.Collections["media"].Mode)
	require.Nil(t, d.Collections["media"].Priority)
	require.Equal(t, core.PriorityHigh, *d.Collections["conversations"].Priority)
	b, err := d.Marshal()
	require.NoError(t, err)
	again, err := policy.ParseDevice(b)
	require.NoError(t, err)
	require.Equal(t, d, again)

	for _, empty := range []string{"", "  \n", "{}"} {
		d, err := policy.ParseDevice([]byte(empty))
		require.NoError(t, err, empty)
		require.Empty(t, d.Collections)
	}
	for _, bad := range []string{
		`{"collections": {"media": {"mode": "sometimes"}}}`,
		`{"collections": {"media": {"priority": "urgent"}}}`,
		`{"collections": {"media": {"mode": 3}}}`,
		`{"collections": {"media": {"colour": "red"}}}`,
		`{"versions": 2}`,
		`{"collections": {}} {}`,
		`[`,
	} {
		_, err := policy.ParseDevice([]byte(bad))
		require.True(t, errors.Is(err, core.ErrInvalidArgument), "%s: %v", bad, err)
	}
}
