package policy_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/policy"
)

func TestDefaultTable(t *testing.T) {
	d := policy.Default()
	want := map[string][2]any{
		core.CollectionProfile:      {core.PriorityHigh, core.ModeImmediate},
		core.CollectionConversation: {core.PriorityMedium, core.ModeImmediate},
		core.CollectionPersonality:  {core.PriorityHigh, core.ModeImmediate},
		core.CollectionEmbeddings:   {core.PriorityLow, core.ModeOnDemand},
		core.CollectionAnalytics:    {core.PriorityLow, core.ModePeriodic},
		core.CollectionMedia:        {core.PriorityLow, core.ModeThumbnail},
		core.CollectionCache:        {core.PriorityNone, core.ModeLocalOnly},
	}
	require.Len(t, d, len(want))
	for c, w := range want {
		require.Equal(t, w[0], d[c].Priority, c)
		require.Equal(t, w[1], d[c].Mode, c)
	}
	require.Equal(t, policy.DefaultInterval, d[core.CollectionAnalytics].Interval)
	// A fresh copy each time.
	d[core.CollectionCache] = core.Policy{Mode: core.ModeImmediate}
	require.Equal(t, core.ModeLocalOnly, policy.Default()[core.CollectionCache].Mode)
}

func TestWithDevicesLeavesTheOriginal(t *testing.T) {
	tab := policy.NewTable(core.Policy{Priority: core.PriorityMedium, Mode: core.ModeImmediate})
	for c, p := range policy.Default() {
		tab.Set(c, p)
	}
	over := policy.Device{Collections: map[string]policy.Override{
		core.CollectionConversation: {Mode: ptr(core.ModePeriodic)},
	}}
	withPhone := tab.WithDevices(map[core.DeviceID]policy.Device{phone: over, laptop: {}})
	require.Equal(t, core.ModePeriodic, withPhone.Decide(phone, core.CollectionConversation).Mode)
	require.Equal(t, core.ModeImmediate, withPhone.Decide(laptop, core.CollectionConversation).Mode)
	require.Equal(t, core.ModeImmediate, tab.Decide(phone, core.CollectionConversation).Mode, "the original table is untouched")
	require.Equal(t, core.ModeImmediate, withPhone.WithDevices(nil).Decide(phone, core.CollectionConversation).Mode)
}
