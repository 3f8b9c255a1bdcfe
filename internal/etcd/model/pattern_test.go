package model

import "testing"

func TestParsePattern(t *testing.T) {
	tests := map[string]struct {
		spec         int
		region, zone string
		matches      [][2]string // region, zone pairs that match
		misses       [][2]string
	}{
		"*":           {spec: 0, matches: [][2]string{{"us-east", "a"}, {"", ""}}},
		"us-east":     {spec: 1, region: "us-east", matches: [][2]string{{"us-east", "a"}, {"us-east", ""}}, misses: [][2]string{{"eu-west", "a"}, {"", ""}}},
		"us-east/*":   {spec: 2, region: "us-east", matches: [][2]string{{"us-east", "a"}, {"us-east", ""}}, misses: [][2]string{{"eu-west", "a"}}},
		"us-east/a":   {spec: 3, region: "us-east", zone: "a", matches: [][2]string{{"us-east", "a"}}, misses: [][2]string{{"us-east", "b"}, {"us-east", ""}, {"eu-west", "a"}}},
		"":            {spec: -1, misses: [][2]string{{"", ""}, {"us-east", "a"}}},
		"*/a":         {spec: -1, misses: [][2]string{{"us-east", "a"}}},
		"us-east/":    {spec: -1, misses: [][2]string{{"us-east", ""}}},
		"us-east/a/b": {spec: -1, misses: [][2]string{{"us-east", "a"}}},
		"/a":          {spec: -1, misses: [][2]string{{"", "a"}}},
	}
	for in, tc := range tests {
		t.Run(in, func(t *testing.T) {
			p := ParsePattern(in)
			if p.Spec != tc.spec || p.Region != tc.region || p.Zone != tc.zone {
				t.Errorf("ParsePattern(%q) = %+v, want spec %d region %q zone %q", in, p, tc.spec, tc.region, tc.zone)
			}
			for _, m := range tc.matches {
				if !p.Matches(m[0], m[1]) {
					t.Errorf("%q does not match %s/%s", in, m[0], m[1])
				}
			}
			for _, m := range tc.misses {
				if p.Matches(m[0], m[1]) {
					t.Errorf("%q matches %s/%s", in, m[0], m[1])
				}
			}
		})
	}
}
