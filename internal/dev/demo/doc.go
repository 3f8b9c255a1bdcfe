// Package demo is `make demo`: a scripted story on a fresh sandbox that shows what
// meshfed is for. A client in alpha (us-east) calls a global service that has copies
// in alpha, beta (us-east) and gamma (eu-west, a network of its own); traffic stays
// local, alpha's copies die and traffic fails over to gamma through gamma's east-west
// gateway with end-to-end mTLS under the mesh root in cert-manager, then alpha's
// copies come back and traffic fails back. It prints, phase by phase, where requests
// landed and how many failed.
package demo
