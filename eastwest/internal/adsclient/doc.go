// Package adsclient is a small state-of-the-world ADS client: it keeps one stream to
// an xDS server open, subscribes to resources by type and name, and hands every
// response of a subscribed type to its caller's Handler, which decides whether the
// response is accepted. meshfed's east-west gateway uses it to take its configuration
// from its cluster's agent, as an Envoy gateway would.
//
// Invariants:
//   - A response is ACKed only after the Handler returned nil for it: the request
//     that answers it carries its version_info and nonce. When the Handler returns an
//     error the response is NACKed: the answer carries the same nonce, the version of
//     the last response the Handler accepted (empty before the first), and the error's
//     message as error_detail.
//   - NACKs of a version refused again are paced: the first NACK of a version goes
//     out at once, the NACKs of the same version sent again after 0.5s, doubling up
//     to 30s, until a response of the type is accepted or another version comes. A
//     server that answers a NACK by resending the refused configuration at once
//     (go-control-plane's SnapshotCache does) would otherwise spin with the client.
//     A new version is answered at once even when it is refused too: the server
//     sends nothing more of the type until it has its answer.
//   - Responses are handled one at a time, in the order the server sent them, on the
//     goroutine of Run; each is answered before the next is handled.
//   - A response of a type not subscribed on the current stream is ignored: it is
//     logged, not handed to the Handler and not answered (an answer would subscribe
//     to it).
//   - Every connection may drop. Run reconnects with exponential backoff (wait.Backoff,
//     100ms doubling to 10s, reset once a stream lived 10s) and resubscribes to every
//     type on each new stream; versions and nonces belong to a stream and start empty
//     on the next, so the server sends the whole state again.
//   - The client knows nothing of resource types: the Handler decodes what it gets.
package adsclient
