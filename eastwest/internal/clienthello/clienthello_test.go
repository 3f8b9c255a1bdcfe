package clienthello

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// hello builds a ClientHello handshake message by hand. Each field is the raw bytes
// of that field, length prefixes included, so that tests can break any of them.
type hello struct {
	version, random, sessionID, ciphers, compression []byte
	extensions                                       []byte // nil: no extensions block
}

func validHello() hello {
	return hello{
		version:     []byte{3, 3},
		random:      make([]byte, 32),
		sessionID:   []byte{0},
		ciphers:     []byte{0, 2, 0x13, 0x01},
		compression: []byte{1, 0},
	}
}

func (h hello) withExtensions(exts ...[]byte) hello {
	body := bytes.Join(exts, nil)
	h.extensions = append(u16(len(body)), body...)
	return h
}

func (h hello) message() []byte {
	body := bytes.Join([][]byte{h.version, h.random, h.sessionID, h.ciphers, h.compression, h.extensions}, nil)
	return append([]byte{handshakeTypeClient, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

// record wraps a handshake message in one TLS record.
func record(msg []byte) []byte {
	return append([]byte{recordTypeHandshake, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

func u16(n int) []byte { return []byte{byte(n >> 8), byte(n)} }

func ext(typ int, data []byte) []byte {
	return append(append(u16(typ), u16(len(data))...), data...)
}

// sniExt builds a server_name extension with one entry per (type, name) pair.
func sniExt(entries ...any) []byte {
	var list []byte
	for i := 0; i < len(entries); i += 2 {
		name := []byte(entries[i+1].(string))
		list = append(list, byte(entries[i].(int)))
		list = append(list, u16(len(name))...)
		list = append(list, name...)
	}
	return ext(extensionServerName, append(u16(len(list)), list...))
}

func TestParseHandmade(t *testing.T) {
	const name = "outbound_.8080_._.cart.shop.svc.clusterset.local"
	alpn := ext(16, []byte{0, 3, 2, 'h', '2'})
	tests := map[string]struct {
		msg     []byte
		want    string
		wantErr error
	}{
		"sni only":                {msg: validHello().withExtensions(sniExt(0, name)).message(), want: name},
		"sni after other":         {msg: validHello().withExtensions(alpn, sniExt(0, name)).message(), want: name},
		"upper case folded":       {msg: validHello().withExtensions(sniExt(0, "Cart.SHOP.local")).message(), want: "cart.shop.local"},
		"unknown name type first": {msg: validHello().withExtensions(sniExt(7, "x", 0, name)).message(), want: name},
		"no extensions block":     {msg: validHello().message(), want: ""},
		"empty extensions block":  {msg: validHello().withExtensions().message(), want: ""},
		"extensions without sni":  {msg: validHello().withExtensions(alpn).message(), want: ""},
		"session id of 32": {msg: func() []byte {
			h := validHello()
			h.sessionID = append([]byte{32}, make([]byte, 32)...)
			return h.withExtensions(sniExt(0, name)).message()
		}(), want: name},

		"session id of 33": {msg: func() []byte {
			h := validHello()
			h.sessionID = append([]byte{33}, make([]byte, 33)...)
			return h.message()
		}(), wantErr: ErrMalformed},
		"odd cipher suites": {msg: func() []byte {
			h := validHello()
			h.ciphers = []byte{0, 3, 1, 2, 3}
			return h.message()
		}(), wantErr: ErrMalformed},
		"no cipher suites": {msg: func() []byte {
			h := validHello()
			h.ciphers = []byte{0, 0}
			return h.message()
		}(), wantErr: ErrMalformed},
		"no compression methods": {msg: func() []byte {
			h := validHello()
			h.compression = []byte{0}
			return h.message()
		}(), wantErr: ErrMalformed},
		"extensions length too long": {msg: func() []byte {
			h := validHello().withExtensions(sniExt(0, name))
			h.extensions[1]++
			return h.message()
		}(), wantErr: ErrMalformed},
		"trailing byte after extensions": {msg: func() []byte {
			h := validHello().withExtensions(sniExt(0, name))
			h.extensions = append(h.extensions, 0)
			return h.message()
		}(), wantErr: ErrMalformed},
		"duplicate extension":     {msg: validHello().withExtensions(alpn, alpn).message(), wantErr: ErrMalformed},
		"duplicate sni extension": {msg: validHello().withExtensions(sniExt(0, "a"), sniExt(0, "b")).message(), wantErr: ErrMalformed},
		"two host names":          {msg: validHello().withExtensions(sniExt(0, "a", 0, "b")).message(), wantErr: ErrMalformed},
		"empty host name":         {msg: validHello().withExtensions(sniExt(0, "")).message(), wantErr: ErrMalformed},
		"no host name entry":      {msg: validHello().withExtensions(sniExt(7, "x")).message(), wantErr: ErrMalformed},
		"empty server name list":  {msg: validHello().withExtensions(ext(0, []byte{0, 0})).message(), wantErr: ErrMalformed},
		"empty server name ext":   {msg: validHello().withExtensions(ext(0, nil)).message(), wantErr: ErrMalformed},
		"control byte in name":    {msg: validHello().withExtensions(sniExt(0, "a\nb")).message(), wantErr: ErrMalformed},
		"space in name":           {msg: validHello().withExtensions(sniExt(0, "a b")).message(), wantErr: ErrMalformed},
		"non-ascii in name":       {msg: validHello().withExtensions(sniExt(0, "caf\xc3\xa9")).message(), wantErr: ErrMalformed},
		"name of 256":             {msg: validHello().withExtensions(sniExt(0, strings.Repeat("a", 256))).message(), wantErr: ErrMalformed},
		"name of 255":             {msg: validHello().withExtensions(sniExt(0, strings.Repeat("a", 255))).message(), want: strings.Repeat("a", 255)},
		"list shorter than ext": {msg: validHello().withExtensions(ext(0, append(sniExt(0, "a")[4:], 0))).message(),
			wantErr: ErrMalformed},
		"short body":         {msg: []byte{1, 0, 0, 3, 3, 3, 0}, wantErr: ErrMalformed},
		"not a client hello": {msg: append([]byte{2}, validHello().message()[1:]...), wantErr: ErrMalformed},
		"length too short": {msg: func() []byte {
			m := validHello().message()
			m[3]--
			return m
		}(), wantErr: ErrMalformed},
		"empty": {msg: nil, wantErr: ErrMalformed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h, err := Parse(tc.msg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Parse: err = %v, want %v", err, tc.wantErr)
			}
			if h.ServerName != tc.want {
				t.Errorf("ServerName = %q, want %q", h.ServerName, tc.want)
			}
			if tc.wantErr != nil {
				return
			}
			// The same message framed as records parses the same, whole or in pieces.
			raw := record(tc.msg)
			for _, size := range []int{1, 3, 7, len(tc.msg)} {
				framed := refragment(t, raw, size)
				got, h, err := Read(bytes.NewReader(framed), 0)
				if err != nil || h.ServerName != tc.want || !bytes.Equal(got, framed) {
					t.Errorf("Read in %d-byte records: %q, %v; raw equal %v", size, h.ServerName, err, bytes.Equal(got, framed))
				}
			}
		})
	}
}

// TestReadReal parses ClientHellos that crypto/tls writes, whole and refragmented, and
// compares the server name with what a crypto/tls server reads from the same bytes.
func TestReadReal(t *testing.T) {
	for name, cfg := range helloConfigs() {
		t.Run(name, func(t *testing.T) {
			raw := realHello(t, cfg)
			ref, ok := serverSees(t, raw)
			if !ok {
				t.Fatal("crypto/tls server did not read a ClientHello")
			}
			ref = strings.ToLower(ref)
			variants := map[string][]byte{
				"as written":       raw,
				"1-byte records":   refragment(t, raw, 1),
				"100-byte records": refragment(t, raw, 100),
			}
			for vname, in := range variants {
				for rname, r := range map[string]io.Reader{
					"one read":         bytes.NewReader(in),
					"byte by byte":     iotest.OneByteReader(bytes.NewReader(in)),
					"half reads":       iotest.HalfReader(bytes.NewReader(in)),
					"followed by data": io.MultiReader(bytes.NewReader(in), strings.NewReader("early data")),
				} {
					got, h, err := Read(r, 0)
					if err != nil {
						t.Fatalf("%s, %s: %v", vname, rname, err)
					}
					if h.ServerName != ref {
						t.Errorf("%s, %s: ServerName %q, crypto/tls saw %q", vname, rname, h.ServerName, ref)
					}
					if !bytes.Equal(got, in) {
						t.Errorf("%s, %s: returned %d bytes, want exactly the %d of the records", vname, rname, len(got), len(in))
					}
				}
				// The refragmented hello is still one crypto/tls accepts.
				if again, _ := serverSees(t, in); strings.ToLower(again) != ref {
					t.Errorf("%s: crypto/tls saw %q", vname, again)
				}
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	real := realHello(t, helloConfigs()["tls13 default"])
	rec := func(typ, major byte, n int) []byte {
		return append([]byte{typ, major, 1, byte(n >> 8), byte(n)}, make([]byte, n)...)
	}
	tests := map[string]struct {
		in      []byte
		max     int
		wantErr error
	}{
		"nothing":              {in: nil, wantErr: io.EOF},
		"partial header":       {in: real[:3], wantErr: io.ErrUnexpectedEOF},
		"truncated record":     {in: real[:len(real)-1], wantErr: io.ErrUnexpectedEOF},
		"truncated 2nd record": {in: refragment(t, real, 100)[:300], wantErr: io.ErrUnexpectedEOF},
		"http request":         {in: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantErr: ErrNotTLS},
		"ssh banner":           {in: []byte("SSH-2.0-OpenSSH_9.6\r\n"), wantErr: ErrNotTLS},
		"sslv2 hello":          {in: []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0, 0x15}, wantErr: ErrNotTLS},
		"application data":     {in: rec(23, 3, 10), wantErr: ErrNotTLS},
		"version 4":            {in: rec(22, 4, 10), wantErr: ErrNotTLS},
		"zero length record":   {in: rec(22, 3, 0), wantErr: ErrMalformed},
		"record over 2^14":     {in: []byte{22, 3, 1, 0x40, 0x01}, wantErr: ErrMalformed},
		"server hello":         {in: record(append([]byte{2}, validHello().message()[1:]...)), wantErr: ErrMalformed},
		"alert in the middle": {in: append(refragment(t, real, 100)[:105], rec(21, 3, 2)...),
			wantErr: ErrMalformed},
		"over the limit": {in: real, max: len(real) - 1, wantErr: ErrTooLarge},
		"declared length over the limit": {in: refragment(t, real, 10)[:15], max: 200,
			wantErr: ErrTooLarge},
		"huge declared handshake": {in: record([]byte{1, 0xff, 0xff, 0xff, 0}), wantErr: ErrTooLarge},
		"garbage":                 {in: bytes.Repeat([]byte{0x16}, 100), wantErr: ErrNotTLS},
		"garbage handshake":       {in: append([]byte{22, 3, 1, 0, 50}, bytes.Repeat([]byte{0xaa}, 50)...), wantErr: ErrMalformed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := bytes.NewReader(tc.in)
			got, _, err := Read(r, tc.max)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if consumed := len(tc.in) - r.Len(); consumed != len(got) {
				t.Errorf("consumed %d bytes but returned %d", consumed, len(got))
			}
			if limit := tc.max; limit > 0 && len(got) > limit {
				t.Errorf("read %d bytes, over the limit %d", len(got), limit)
			}
		})
	}
}

func TestReadExactLimit(t *testing.T) {
	real := realHello(t, helloConfigs()["tls13 default"])
	if _, h, err := Read(bytes.NewReader(real), len(real)); err != nil || h.ServerName == "" {
		t.Fatalf("at exactly its size: %q, %v", h.ServerName, err)
	}
	// A maximal ClientHello: one full record.
	msg := validHello().withExtensions(sniExt(0, "a.b"), ext(21, nil)).message()
	pad := MaxRecordPayload - len(msg)
	big := validHello().withExtensions(sniExt(0, "a.b"), ext(21, make([]byte, pad))).message()
	if len(big) != MaxRecordPayload {
		t.Fatalf("built %d bytes", len(big))
	}
	if _, h, err := Read(bytes.NewReader(record(big)), DefaultMaxBytes); err != nil || h.ServerName != "a.b" {
		t.Fatalf("16 KiB hello: %q, %v", h.ServerName, err)
	}
	// The same split over two records needs 5 more bytes than the default allows.
	if _, _, err := Read(bytes.NewReader(refragment(t, record(big), 10000)), DefaultMaxBytes); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("16 KiB hello in two records: %v, want ErrTooLarge", err)
	}
}

// TestReadReaderError checks that an error of the reader (a timeout, a reset) is
// returned as is, with the bytes read before it.
func TestReadReaderError(t *testing.T) {
	real := realHello(t, helloConfigs()["tls13 default"])
	boom := errors.New("boom")
	got, _, err := Read(io.MultiReader(bytes.NewReader(real[:20]), iotest.ErrReader(boom)), 0)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if !bytes.Equal(got, real[:20]) {
		t.Errorf("returned %d bytes, want the 20 read", len(got))
	}
}

func BenchmarkRead(b *testing.B) {
	raw := realHello(b, helloConfigs()["alpn h2"])
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Read(bytes.NewReader(raw), 0); err != nil {
			b.Fatal(err)
		}
	}
}
