module github.com/devicemesh/federation

go 1.26.0

require (
	filippo.io/edwards25519 v1.2.0
	github.com/stretchr/testify v1.12.1
	golang.org/x/crypto v0.59.0
)

require github.com/restic/chunker v0.4.0

require (
	github.com/antlr4-go/antlr/v4 v4.13.0 // indirect
	github.com/flynn/noise v1.1.0
	github.com/libsql/sqlite-antlr4-parser v0.0.0-20240327125255-dbf53b6cbf06 // indirect
	github.com/quic-go/quic-go v0.65.0
	github.com/tursodatabase/go-libsql v0.0.0-20251219133454-43644db490ff
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/exp v0.0.0-20230515195305-f3d0a9c9a5cc // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	pgregory.net/rapid v1.3.0
)
