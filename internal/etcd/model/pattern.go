package model

import "strings"

// Pattern is a parsed locality pattern of a distribute rule: "*", "<region>",
// "<region>/*" or "<region>/<zone>". It is the one definition of which localities a
// pattern matches: the agents' priorities and the hub's check that a rule matches a
// registered locality must agree on it.
type Pattern struct {
	Raw          string // as written
	Region, Zone string
	// Spec is the specificity: 0 "*", 1 "<region>", 2 "<region>/*", 3
	// "<region>/<zone>"; -1 for a malformed pattern, which matches nothing.
	Spec int
}

// ParsePattern parses a locality pattern; a malformed one has Spec -1.
func ParsePattern(s string) Pattern {
	p := Pattern{Raw: s, Spec: -1}
	region, zone, hasZone := strings.Cut(s, "/")
	switch {
	case s == "*":
		p.Spec = 0
	case region == "" || region == "*" || strings.Contains(zone, "/"):
	case !hasZone:
		p.Region, p.Spec = region, 1
	case zone == "*":
		p.Region, p.Spec = region, 2
	case zone != "":
		p.Region, p.Zone, p.Spec = region, zone, 3
	}
	return p
}

// Matches reports whether a locality in region and zone matches p. "*" in the zone
// position matches any zone, an unknown one too.
func (p Pattern) Matches(region, zone string) bool {
	switch p.Spec {
	case 0:
		return true
	case 1, 2:
		return region == p.Region
	case 3:
		return region == p.Region && zone == p.Zone
	}
	return false
}
