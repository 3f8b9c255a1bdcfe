package federation

import "testing"

func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{
		"https://127.0.0.1:2379":        "127.0.0.1",
		"https://etcd.example.com:2379": "etcd.example.com",
		"https://etcd.example.com":      "etcd.example.com",
		"https://[::1]:2379":            "::1",
		"https://[fd00::1]":             "fd00::1",
		"http://127.0.0.1:2379":         "",
		"127.0.0.1:2379":                "",
		"https://%zz":                   "",
	} {
		if got := hostOf(in); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
	}
}
