// Package federationv1connect holds the Connect client and handler of
// fednode's API (devicemesh.federation.v1), generated from
// federation.proto by protoc-gen-connect-go (api/generate.sh).
package federationv1connect
