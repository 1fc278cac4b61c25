package core_test

import (
	"errors"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/stretchr/testify/require"
)

func TestPolicyTextForms(t *testing.T) {
	for p := core.PriorityNone; p <= core.PriorityHigh; p++ {
		b, err := p.MarshalText()
		require.NoError(t, err)
		var q core.Priority
		require.NoError(t, q.UnmarshalText(b))
		require.Equal(t, p, q)
	}
	for m := core.ModeImmediate; m <= core.ModeLocalOnly; m++ {
		b, err := m.MarshalText()
		require.NoError(t, err)
		var n core.Mode
		require.NoError(t, n.UnmarshalText(b))
		require.Equal(t, m, n)
	}
	_, err := core.ParseMode("sometimes")
	require.True(t, errors.Is(err, core.ErrInvalidArgument))
	_, err = core.ParsePriority("urgent")
	require.True(t, errors.Is(err, core.ErrInvalidArgument))
	_, err = core.Priority(9).MarshalText()
	require.True(t, errors.Is(err, core.ErrInvalidArgument))
	_, err = core.Mode(-1).MarshalText()
	require.True(t, errors.Is(err, core.ErrInvalidArgument))
}
