// Package policy is the one definition of what meshfed's traffic and authorization
// policies mean for a call: which route of a TrafficPolicy applies (Route), which
// subset an endpoint is in (SubsetOf), and whether an identity may call a method of a
// global service (Decide, NamespaceDefault). The agents' xDS builder and
// `meshfedctl policy explain` both call it, so what is explained is what is served.
//
// Authorization, for a call from caller to a method of a global service, given the
// AuthorizationPolicies that apply to it (those naming it and the namespace-wide ones
// of its namespace, as view.AuthorizationPolicies returns them):
//
//  1. A Deny rule that matches denies the call: Deny wins.
//  2. Otherwise, if any Allow policy with rules applies, the call passes only if an
//     Allow rule matches.
//  3. Otherwise the namespace's default decides: Deny if any namespace-wide policy
//     says defaultAction Deny, else Allow.
//
// A rule matches when the caller matches one of its sources (none: anyone) and the
// method one of its methods (none: any). A source matches when every field it sets
// holds the caller's cluster, namespace and service account. A method pattern
// "/pkg.Service/Method" matches that method, "/pkg.Service/*" every method of it.
//
// Everything here is pure: no I/O, no clocks, records are never modified.
package policy
