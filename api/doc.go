// Package api holds the protobuf schema of fednode's local API
// (federation/v1/federation.proto) and the code generated from it:
// package federationv1 (messages) and federationv1connect (Connect
// clients and handlers). Regenerate with api/generate.sh; the test in this
// package fails when the committed code is stale.
package api
