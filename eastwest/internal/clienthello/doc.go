// Package clienthello reads a TLS ClientHello off a connection without taking part
// in the handshake, and extracts what the east-west gateway routes on: the server name
// (SNI).
//
// Invariants:
//   - Read consumes exactly the TLS records that carry the ClientHello handshake
//     message, never a byte more, and returns every byte it consumed, so the caller can
//     replay them to the real TLS server unchanged.
//   - Read is bounded: it reads at most the limit it is given, and it reads record by
//     record (a 5-byte header, then exactly the length that header names), so a peer
//     that lies about lengths is stopped at the limit, not trusted.
//   - Nothing is decrypted or answered; the package knows nothing of keys.
//   - Parse and Read never panic on any input (FuzzParseClientHello).
//
// The parser is strict where the TLS specifications are (record and handshake framing,
// vector lengths, duplicate extensions, one host_name, no trailing bytes) and lenient
// where clients differ (legacy version numbers, unknown extensions and name types).
// Record framing is read by hand (it comes off the connection record by record);
// the handshake message is parsed with golang.org/x/crypto/cryptobyte, whose
// length-prefixed reads never go past the bytes they were given.
package clienthello
