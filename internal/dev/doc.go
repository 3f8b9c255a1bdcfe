// Package dev is the line between meshfed's product and its development tooling.
//
// The packages under internal/dev run the local sandbox federation (meshfedctl dev),
// the demo and the tests: local control planes (localkube), the process runner (proc),
// test hosts in network namespaces (testnet), the gRPC echo backend (echo), the
// sandbox and the demo. They may import product packages; no product package
// (federation, clusteragent, eastwest, trust, api, cmd/meshfed and what they import)
// may import them. make verify-imports checks it, and so does this package's test,
// which runs in make test.
package dev
