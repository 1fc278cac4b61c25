package libsqlstore

import (
	"context"
	"log/slog"

	"github.com/devicemesh/federation/store/memstore"
)

type Options struct{ Logger *slog.Logger }
type Store = memstore.Store

func Open(ctx context.Context, path string, opts Options) (*Store, error) { return memstore.New(), nil }
