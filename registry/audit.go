package registry

import "github.com/devicemesh/federation/audit"

// AuditEntry returns the audit log entry recording o: its kind, its author
// as the entry's device, and the target's short id and the secret
// generation as detail. Names and policies are not recorded.
func (o *Op) AuditEntry() audit.Entry {
	d := audit.Detail{audit.Text("op", o.Kind.String())}
	if !o.Target.IsZero() {
		d = append(d, audit.Text("target", o.Target.Short()))
	}
	if o.Kind == OpAdd {
		d = append(d, audit.Text("trust", o.Trust.String()))
	}
	if o.Kind == OpRotateSecret {
		d = append(d, audit.Num("generation", int64(o.Generation)))
	}
	return audit.Entry{Kind: audit.KindRegistryOp, At: o.At.Time(), Device: o.Author(), Detail: d}
}
