package federation

import "context"

// locked runs fn with the node's write lock held (through the replica,
// which owns it), for tests that call functions documented as "called with
// the write lock held".
func (n *Node) locked(fn func()) {
	_ = n.c.Rep.Exclusive(context.Background(), "", func() error {
		fn()
		return nil
	})
}
