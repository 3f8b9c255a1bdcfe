// Package demo is `make demo`: a scripted story on a fresh sandbox that shows what
// meshfed is for. A client in alpha (us-east) calls a global service that has copies
// in alpha, beta (us-east) and gamma (eu-west, a network of its own); traffic stays
// local, alpha's copies die and traffic fails over to gamma through gamma's east-west
// gateway with end-to-end mTLS under the mesh root in cert-manager, then alpha's
// copies come back and traffic fails back. Act two writes policies on the hub: a
// TrafficPolicy sending 10% of the calls to beta (a canary) and an
// AuthorizationPolicy that cart's servers (proxyless gRPC xDS servers of their
// agents) enforce, refusing beta's frontend; then deletes them. It prints, phase by
// phase, where requests landed and how many failed or were denied.
package demo
