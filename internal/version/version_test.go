package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for name, tc := range map[string]struct {
		version, commit string
		want            string
	}{
		"unset":    {"dev", "", "dev (" + runtime.Version()},
		"released": {"v1.2.3", "0123abcd", "v1.2.3 (commit 0123abcd, " + runtime.Version()},
	} {
		t.Run(name, func(t *testing.T) {
			v, c := Version, Commit
			t.Cleanup(func() { Version, Commit = v, c })
			Version, Commit = tc.version, tc.commit
			if got := String(); !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, runtime.GOOS+"/"+runtime.GOARCH+")") {
				t.Errorf("String() = %q, want prefix %q and the platform", got, tc.want)
			}
		})
	}
}

func TestRelease(t *testing.T) {
	for in, want := range map[string]string{
		String(): Version,
		"v1.2.3 (commit abc, go1.26.8, linux/arm64)": "v1.2.3",
		"v1.2.3": "v1.2.3",
		"":       "",
	} {
		if got := Release(in); got != want {
			t.Errorf("Release(%q) = %q, want %q", in, got, want)
		}
	}
}
