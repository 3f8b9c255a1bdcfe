// Package chart renders and lints meshfed's Helm chart (deploy/charts/meshfed) with
// Helm's Go SDK, the way `helm template` and `helm lint` would, for the tests that
// prove the chart and for make generate, which writes the plain manifests under
// deploy/ from it (gen/).
package chart
