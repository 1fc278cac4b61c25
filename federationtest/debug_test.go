package federationtest_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/federationtest"
)

// history describes, for every node, the changelog entries and the current
// record of one key: printed when a seed fails, to explain the difference.
func history(m *federationtest.Mesh, coll, key string) string {
	ctx := context.Background()
	var b strings.Builder
	for i := range m.Len() {
		st := m.Store(i)
		fmt.Fprintf(&b, "node %d (%s):\n", i, m.Node(i).DeviceID().Short())
		vv, _ := st.VersionVector(ctx)
		for _, d := range vv.Devices() {
			_ = st.Changes(ctx, d, 0, 0, func(c core.Change) error {
				if c.Collection == coll && c.Key == key {
					fmt.Fprintf(&b, "  change %s:%d txn %d+%d del=%v ts=%v ctx=%v val=%q\n", c.Origin.Short(), c.Seq, c.TxnFirst, c.TxnLen, c.Deleted, c.Timestamp, c.Context, c.Value)
				}
				return nil
			})
		}
		for _, r := range m.Recorder(i).Local() {
			if r.Collection == coll && r.Key == key {
				fmt.Fprintf(&b, "  wrote %s:%d del=%v ts=%v ctx=%v val=%q\n", r.Origin.Short(), r.Seq, r.Deleted, r.Timestamp, r.Context, r.Value)
			}
		}
		r, err := st.Get(ctx, coll, key)
		fmt.Fprintf(&b, "  current: %s:%d del=%v ctx=%v val=%q err=%v\n", r.Origin.Short(), r.Seq, r.Deleted, r.Context, r.Value, err)
	}
	return b.String()
}
