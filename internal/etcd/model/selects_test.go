package model

import (
	"strings"
	"testing"
)

func TestCompareIsStringOrder(t *testing.T) {
	names := []string{"", "a", "a-b", "a.b", "ab", "b", "a/", "z"}
	for _, ns1 := range names {
		for _, n1 := range names {
			for _, ns2 := range names {
				for _, n2 := range names {
					a, b := &GlobalService{Namespace: ns1, Name: n1}, &GlobalService{Namespace: ns2, Name: n2}
					if got, want := Compare(a, b), strings.Compare(a.String(), b.String()); got != want {
						t.Fatalf("Compare(%q, %q) = %d, want %d", a.String(), b.String(), got, want)
					}
				}
			}
		}
	}
}
