package clienthello

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzParseClientHello feeds arbitrary bytes to Read (as a connection would) and to
// Parse (as one handshake message). The seed corpus in testdata/ holds real
// ClientHellos from crypto/tls, refragmented ones and garbage; it runs in every
// `go test`. Run the fuzzer with
//
//	go test -run='^$' -fuzz=FuzzParseClientHello -fuzztime=60s ./eastwest/internal/clienthello
func FuzzParseClientHello(f *testing.F) {
	f.Add(record(validHello().withExtensions(sniExt(0, "outbound_.8080_._.a.b")).message()))
	f.Add(record(validHello().message()))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		raw, h, err := Read(r, DefaultMaxBytes)
		if consumed := len(data) - r.Len(); consumed != len(raw) || !bytes.Equal(raw, data[:consumed]) {
			t.Fatalf("consumed %d bytes, returned %d that differ from the input", consumed, len(raw))
		}
		if len(raw) > DefaultMaxBytes {
			t.Fatalf("read %d bytes, over the limit", len(raw))
		}
		if err == nil {
			checkName(t, h.ServerName)
		} else if h != (Hello{}) {
			t.Fatalf("error %v with a Hello %+v", err, h)
		}
		// How the bytes arrive does not change the outcome.
		raw1, h1, err1 := Read(iotest.OneByteReader(bytes.NewReader(data)), DefaultMaxBytes)
		if !bytes.Equal(raw1, raw) || h1 != h || (err == nil) != (err1 == nil) {
			t.Fatalf("byte by byte: %d bytes, %+v, %v; at once: %d bytes, %+v, %v", len(raw1), h1, err1, len(raw), h, err)
		}
		if h, err := Parse(data); err == nil {
			checkName(t, h.ServerName)
		}
	})
}

func checkName(t *testing.T, name string) {
	t.Helper()
	if len(name) > maxHostNameLen {
		t.Fatalf("server name of %d bytes", len(name))
	}
	if strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-._") != "" {
		t.Fatalf("server name %q has bytes outside [a-z0-9-._]", name)
	}
}

// TestWriteFuzzCorpus regenerates the committed seed corpus when
// CLIENTHELLO_WRITE_CORPUS=1. Real ClientHellos carry random bytes, so every run
// writes different files; only run it to change what the corpus covers.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("CLIENTHELLO_WRITE_CORPUS") != "1" {
		t.Skip("set CLIENTHELLO_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzParseClientHello")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseClientHello")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	for name, cfg := range helloConfigs() {
		seeds["real-"+strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(name)] = realHello(t, cfg)
	}
	tls13 := seeds["real-tls13-default"]
	seeds["real-fragmented-7"] = refragment(t, tls13, 7)
	seeds["real-fragmented-300"] = refragment(t, tls13, 300)
	seeds["real-truncated"] = tls13[:len(tls13)/2]
	seeds["real-with-early-data"] = append(bytes.Clone(tls13), 23, 3, 3, 0, 4, 1, 2, 3, 4)
	seeds["handmade-two-names"] = record(validHello().withExtensions(sniExt(0, "a", 0, "b")).message())
	seeds["handmade-duplicate-ext"] = record(validHello().withExtensions(sniExt(0, "a"), sniExt(0, "a")).message())
	seeds["garbage-http"] = []byte("GET / HTTP/1.1\r\nHost: cart\r\n\r\n")
	seeds["garbage-handshake-type"] = append([]byte{22, 3, 1, 0, 8}, bytes.Repeat([]byte{0xaa}, 8)...)
	seeds["garbage-huge-length"] = []byte{22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff}
	seeds["garbage-empty"] = []byte{}
	for name, data := range seeds {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
