package federation

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/engine"
)

// TestPolicyLookupThroughTable: the node's policy lookup (now a
// policy.Table) keeps its rules: the host's policies over the defaults,
// the node's own collections local-only whatever the host says, the
// collections the mesh runs on high and immediate, medium and immediate
// for names given nowhere; a Config that was never validated answers
// the same.
func TestPolicyLookupThroughTable(t *testing.T) {
	cfg, err := Config{Dir: t.TempDir(), Collections: map[string]Policy{
		"notes":                 {Priority: core.PriorityLow, Mode: core.ModePeriodic},
		CollectionCache:         {Priority: core.PriorityHigh, Mode: core.ModeImmediate},
		internalPrefix + "mine": {Priority: core.PriorityHigh, Mode: core.ModeImmediate},
	}}.validate()
	require.NoError(t, err)
	raw := Config{Collections: cfg.Collections}
	for _, c := range []*Config{&cfg, &raw} {
		require.Equal(t, core.ModePeriodic, c.policy("notes").Mode)
		require.Equal(t, core.PriorityHigh, c.policy(CollectionCache).Priority, "the host's policy replaces the default")
		require.True(t, c.policy(CollectionCache).Syncs())
		require.False(t, c.policy(internalPrefix+"mine").Syncs(), "internal names stay local-only")
		require.False(t, c.policy(merkleMetaProbe).Syncs())
		for _, pinned := range []string{registryCollection, replicasCollection, auditHeadsCollection} {
			p := c.policy(pinned)
			require.Equal(t, core.PriorityHigh, p.Priority, pinned)
			require.Equal(t, core.ModeImmediate, p.Mode, pinned)
		}
		require.IsType(t, conflict.LWW{}, c.policy(registryCollection).Resolver)
		require.IsType(t, headResolver{}, c.policy(auditHeadsCollection).Resolver)
		require.Equal(t, Policy{Priority: core.PriorityMedium, Mode: core.ModeImmediate}, c.policy("elsewhere"))
		require.Equal(t, conflict.Default(CollectionProfile), c.policy(CollectionProfile).Resolver)
		require.Equal(t, core.PriorityHigh, c.planner().Priority(core.DeviceID{9}, CollectionProfile))
	}
}

const merkleMetaProbe = internalPrefix + "anything"

// TestFileNamesMatchEngine: the file names the façade documents are the
// ones internal/engine opens, locks and restores.
func TestFileNamesMatchEngine(t *testing.T) {
	require.Equal(t, DBFile, engine.DBFile)
	require.Equal(t, LockFile, engine.LockFile)
	require.Equal(t, RestoredFile, engine.RestoredFile)
}
