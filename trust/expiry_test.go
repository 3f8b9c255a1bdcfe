package trust

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestNeedsRenewal(t *testing.T) {
	nb := t0
	cert := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(90 * time.Hour)}
	renewAt := nb.Add(60 * time.Hour)
	if got := RenewAt(cert); !got.Equal(renewAt) {
		t.Fatalf("RenewAt = %s, want %s", got, renewAt)
	}
	tests := map[string]struct {
		now  time.Time
		want bool
	}{
		"before NotBefore":             {nb.Add(-time.Hour), false},
		"at NotBefore":                 {nb, false},
		"half way":                     {nb.Add(45 * time.Hour), false},
		"a nanosecond before 2/3":      {renewAt.Add(-time.Nanosecond), false},
		"exactly 2/3 (1/3 left)":       {renewAt, true},
		"a nanosecond after 2/3":       {renewAt.Add(time.Nanosecond), true},
		"a nanosecond before NotAfter": {cert.NotAfter.Add(-time.Nanosecond), true},
		"expired":                      {cert.NotAfter.Add(time.Hour), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := NeedsRenewal(cert, tc.now); got != tc.want {
				t.Errorf("NeedsRenewal at %s = %v, want %v", tc.now.Sub(nb), got, tc.want)
			}
		})
	}
}

func TestIntermediateExpiry(t *testing.T) {
	root := newTestRoot(t, testTD)
	ic, chain := newTestIntermediate(t, root, testTD, "east")
	got, err := IntermediateExpiry(chain)
	if err != nil || !got.Equal(ic.Cert.NotAfter) {
		t.Errorf("IntermediateExpiry = %s, %v; want %s", got, err, ic.Cert.NotAfter)
	}
	leaf, _, err := IssueWorkload(ic, testTD, "a", "b", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := IntermediateExpiry(leaf); err == nil {
		t.Error("IntermediateExpiry accepted a workload certificate")
	}
	if _, err := IntermediateExpiry([]byte("junk")); err == nil {
		t.Error("IntermediateExpiry accepted junk")
	}
}
