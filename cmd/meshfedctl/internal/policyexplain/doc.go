// Package policyexplain is `meshfedctl policy explain`: whether a call from one
// workload identity to a method of a global service would be allowed, by which rule,
// and which route (retries, timeout, fault, load balancing, split) applies.
//
// It computes nothing of its own: it calls package policy (Decide,
// NamespaceDefault, Route, SubsetOf), the one definition the agents' xDS builder
// calls too, over the records an agent serves from (its /debug/view). The hub's
// objects, when given, add their conditions (Accepted, ResolvedRefs, Programmed) and
// say which policies the agent does not serve yet, so an operator sees when the
// explanation is not live.
//
// Everything here is pure: the command fetches the view and the objects.
package policyexplain
