package clienthello

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
)

// Sizes from RFC 8446 (TLS 1.3) and RFC 5246 (TLS 1.2).
const (
	// RecordHeaderLen is the size of a TLS record header: type, version, length.
	RecordHeaderLen = 5
	// MaxRecordPayload is the largest plaintext record a peer may send (2^14).
	MaxRecordPayload = 1 << 14
	// DefaultMaxBytes bounds a ClientHello read with Read: one full record. Real
	// ClientHellos, even with post-quantum key shares, are a few kilobytes.
	DefaultMaxBytes = MaxRecordPayload + RecordHeaderLen

	recordTypeHandshake    = 22
	handshakeTypeClient    = 1
	handshakeHeaderLen     = 4
	extensionServerName    = 0
	serverNameTypeHostName = 0
	maxHostNameLen         = 255
)

var (
	// ErrNotTLS means the first bytes are not a TLS handshake record.
	ErrNotTLS = errors.New("clienthello: not a TLS handshake")
	// ErrMalformed means the bytes are TLS records but do not hold a well-formed
	// ClientHello; the returned error wraps it with the detail.
	ErrMalformed = errors.New("clienthello: malformed")
	// ErrTooLarge means the ClientHello does not fit the limit given to Read.
	ErrTooLarge = errors.New("clienthello: too large")
)

// Hello is what the gateway learns from a ClientHello.
type Hello struct {
	// ServerName is the SNI host_name, in lower case; empty when the client sent none.
	ServerName string
}

// Read reads TLS records from r until they hold a whole ClientHello handshake message,
// which may span several records, each of which may arrive in several reads.
//
// It returns the bytes it read, exactly the records that carry the message, and the
// parsed Hello. It never reads more than max bytes (DefaultMaxBytes when max <= 0).
//
// Errors: io.EOF when r ends before the first byte; io.ErrUnexpectedEOF when it ends
// inside the ClientHello; ErrNotTLS, ErrTooLarge, or an error wrapping ErrMalformed;
// otherwise r's error (a timeout, a reset). raw holds whatever was read in every case.
func Read(r io.Reader, max int) (raw []byte, h Hello, err error) {
	if max <= 0 {
		max = DefaultMaxBytes
	}
	var (
		hdr [RecordHeaderLen]byte
		msg []byte // the handshake message, reassembled when it spans records
		// want is the length of the handshake message, header included, once known.
		want = -1
	)
	for records := 0; ; records++ {
		if k, err := io.ReadFull(r, hdr[:]); err != nil {
			if records > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			// A partial header is still what was read.
			return append(raw, hdr[:k]...), Hello{}, err
		}
		typ, major, n := hdr[0], hdr[1], int(hdr[3])<<8|int(hdr[4])
		switch {
		case records == 0 && (typ != recordTypeHandshake || major != 3):
			return append(raw, hdr[:]...), Hello{}, ErrNotTLS
		case typ != recordTypeHandshake:
			// RFC 8446 §5.1: handshake messages are not interleaved with other records.
			return append(raw, hdr[:]...), Hello{}, fmt.Errorf("%w: record of type %d inside the ClientHello", ErrMalformed, typ)
		case major != 3:
			return append(raw, hdr[:]...), Hello{}, fmt.Errorf("%w: record version %d.%d", ErrMalformed, hdr[1], hdr[2])
		case n == 0:
			// RFC 8446 §5.1: no zero-length handshake fragments.
			return append(raw, hdr[:]...), Hello{}, fmt.Errorf("%w: empty handshake record", ErrMalformed)
		case n > MaxRecordPayload:
			return append(raw, hdr[:]...), Hello{}, fmt.Errorf("%w: record of %d bytes", ErrMalformed, n)
		case len(raw)+RecordHeaderLen+n > max:
			return append(raw, hdr[:]...), Hello{}, ErrTooLarge
		}
		if raw == nil {
			// Most ClientHellos are one record: size the buffer for it.
			raw = make([]byte, 0, RecordHeaderLen+n)
		}
		raw = append(raw, hdr[:]...)
		start := len(raw)
		raw = append(raw, make([]byte, n)...)
		if k, err := io.ReadFull(r, raw[start:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return raw[:start+k], Hello{}, err
		}
		if records == 0 {
			msg = raw[start:] // no copy for the common single-record case
		} else {
			msg = append(msg[:len(msg):len(msg)], raw[start:]...)
		}
		if want < 0 && len(msg) >= handshakeHeaderLen {
			if msg[0] != handshakeTypeClient {
				return raw, Hello{}, fmt.Errorf("%w: handshake message of type %d, not ClientHello", ErrMalformed, msg[0])
			}
			want = handshakeHeaderLen + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			// The rest of the message needs at least one more record header if it is
			// not all here yet; fail now rather than after reading up to the limit.
			if missing := want - len(msg); missing > 0 && len(raw)+RecordHeaderLen+missing > max {
				return raw, Hello{}, ErrTooLarge
			}
		}
		if want >= 0 && len(msg) >= want {
			// Bytes after the ClientHello in its last record are kept in raw (they
			// are replayed too) but are not part of the message.
			h, err := Parse(msg[:want])
			return raw, h, err
		}
	}
}

// Parse parses one ClientHello handshake message: the 4-byte handshake header
// (type 1, 24-bit length) followed by exactly that many bytes of body.
func Parse(msg []byte) (Hello, error) {
	s := cryptobyte.String(msg)
	var (
		typ  uint8
		body cryptobyte.String
	)
	if !s.ReadUint8(&typ) || typ != handshakeTypeClient {
		return Hello{}, fmt.Errorf("%w: not a ClientHello message", ErrMalformed)
	}
	if !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return Hello{}, fmt.Errorf("%w: handshake length does not match the message", ErrMalformed)
	}
	return parseBody(body)
}

func parseBody(b cryptobyte.String) (Hello, error) {
	malformed := func(what string) (Hello, error) {
		return Hello{}, fmt.Errorf("%w: %s", ErrMalformed, what)
	}
	if !b.Skip(2 + 32) { // legacy_version, random
		return malformed("short ClientHello")
	}
	var sid, cs, cm cryptobyte.String
	if !b.ReadUint8LengthPrefixed(&sid) || len(sid) > 32 {
		return malformed("bad legacy_session_id")
	}
	if !b.ReadUint16LengthPrefixed(&cs) || len(cs) < 2 || len(cs)%2 != 0 {
		return malformed("bad cipher_suites")
	}
	if !b.ReadUint8LengthPrefixed(&cm) || len(cm) < 1 {
		return malformed("bad legacy_compression_methods")
	}
	if b.Empty() {
		return Hello{}, nil // no extensions at all (allowed before TLS 1.3): no SNI
	}
	var exts cryptobyte.String
	if !b.ReadUint16LengthPrefixed(&exts) || !b.Empty() {
		return malformed("bad extensions length")
	}
	var (
		h    Hello
		seen extensionSet
	)
	for !exts.Empty() {
		var (
			typ  uint16
			data cryptobyte.String
		)
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return malformed("truncated extension")
		}
		if !seen.add(typ) {
			return malformed(fmt.Sprintf("extension %d repeated", typ))
		}
		if typ != extensionServerName {
			continue
		}
		name, err := parseServerName(data)
		if err != nil {
			return Hello{}, err
		}
		h.ServerName = name
	}
	return h, nil
}

// parseServerName parses the server_name extension (RFC 6066 §3) and returns its
// host_name, lower-cased.
func parseServerName(data cryptobyte.String) (string, error) {
	malformed := func(what string) (string, error) {
		return "", fmt.Errorf("%w: server_name: %s", ErrMalformed, what)
	}
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return malformed("bad server_name_list")
	}
	var host []byte
	for !list.Empty() {
		var (
			typ  uint8
			name cryptobyte.String
		)
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&name) {
			return malformed("truncated entry")
		}
		if typ != serverNameTypeHostName {
			continue // other name types are not defined; skip, as RFC 6066 allows
		}
		if host != nil {
			return malformed("more than one host_name")
		}
		if len(name) == 0 || len(name) > maxHostNameLen {
			return malformed("host_name length")
		}
		host = name
	}
	if host == nil {
		return malformed("no host_name")
	}
	out := make([]byte, len(host))
	for i, c := range host {
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_':
		default:
			// Only what may appear in a DNS name (and Istio's "outbound_" names)
			// passes; this also keeps control bytes out of logs.
			return malformed(fmt.Sprintf("byte %#x in host_name", c))
		}
		out[i] = c
	}
	return string(out), nil
}

// extensionSet records extension types seen, to refuse duplicates (RFC 8446 §4.2)
// without allocating.
type extensionSet [1 << 16 / 64]uint64

func (s *extensionSet) add(t uint16) bool {
	w, bit := t/64, uint64(1)<<(t%64)
	if s[w]&bit != 0 {
		return false
	}
	s[w] |= bit
	return true
}
