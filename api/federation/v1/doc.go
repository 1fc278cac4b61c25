// Package federationv1 holds the messages of fednode's API
// (devicemesh.federation.v1), generated from federation.proto by protoc
// (api/generate.sh); see the proto file and api/README.md for what each
// method does.
package federationv1
