// Package console is the hub's read-only web console: one page, embedded in the
// binary, that draws the federation as the hub's view holds it (regions, clusters and
// their zones, networks and gateways, connection state and heartbeat age), every
// global service with its ready endpoints per cluster and zone, and, for a chosen
// client cluster and zone, the priority table `meshfedctl failover explain` prints.
//
// Invariants:
//   - It only reads. Every handler answers GET and HEAD and refuses anything else; it
//     writes nothing to etcd or the API server and holds no state of its own beyond
//     what the view gives it at each request.
//   - It loads nothing from elsewhere. The page is one embedded file with its CSS and
//     JavaScript inline; the Content-Security-Policy it is served with forbids any
//     other origin, so a browser cannot fetch a CDN asset even by mistake.
//   - The explain table is the agent's, never recomputed here. A client's table
//     depends on what that cluster's agent has seen (its failback holds, its probes of
//     other clusters' gateways), which only the agent knows; the console asks the
//     agent's /debug/explain, exactly as `meshfedctl failover explain` does, so the
//     two always print the same text. Options.Agents says where each agent answers;
//     a cluster without an entry has no explain view.
//
// The page polls /api/federation every second, so it follows the view live; a
// cluster whose agent dies shows disconnected as soon as its heartbeat lease expires
// (the agent's heartbeat TTL after its last keep-alive), plus up to a second of polling.
package console
