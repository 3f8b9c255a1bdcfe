package trust

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// A member cluster's intermediate is bound to the cluster by an X.509 name
// constraints extension (RFC 5280 4.2.1.10), marked critical, that
//
//   - permits URIs whose host is the cluster's identity domain
//     (ClusterTrustDomain: <cluster>.<trust-domain>) and nothing else, and
//   - excludes every DNS name, IP address (0.0.0.0/0 and ::/0) and email address,
//
// so that whatever the intermediate's key signs can carry only the cluster's own
// SPIFFE IDs: every RFC 5280 verifier (Go's crypto/x509, BoringSSL, OpenSSL) refuses
// a leaf naming another cluster's identity, the bare trust domain, another trust
// domain or any DNS, IP or email name. Permitting one URI domain alone would leave
// the other name forms unconstrained (a name form without a permitted subtree is not
// restricted), hence the exclusions. URI constraints apply to the host only, which is
// why a cluster's identities live under a host of their own rather than a path.

var oidNameConstraints = asn1.ObjectIdentifier{2, 5, 29, 30}

// GeneralName tags (RFC 5280 4.2.1.6), context-specific and implicit.
const (
	tagEmail = 1
	tagDNS   = 2
	tagURI   = 6
	tagIP    = 7
)

// generalSubtree is RFC 5280's GeneralSubtree; minimum and maximum must be absent
// (RFC 5280 says so for every name form meshfed uses).
type generalSubtree struct {
	Base    asn1.RawValue
	Minimum int `asn1:"optional,tag:0,default:0"`
	Maximum int `asn1:"optional,tag:1,default:-1"`
}

type nameConstraintsDER struct {
	Permitted []generalSubtree `asn1:"optional,tag:0"`
	Excluded  []generalSubtree `asn1:"optional,tag:1"`
}

// constraints is a name constraints extension's content, in a form to compare and
// to print.
type constraints struct {
	PermittedURI, PermittedDNS, PermittedEmail []string
	PermittedIP                                []*net.IPNet
	ExcludedURI, ExcludedDNS, ExcludedEmail    []string
	ExcludedIP                                 []*net.IPNet
}

// excludedIPs are every IPv4 and every IPv6 address.
var excludedIPs = []*net.IPNet{
	{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
	{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
}

// clusterConstraints are the constraints of cluster's intermediate in trustDomain.
func clusterConstraints(trustDomain, cluster string) constraints {
	return constraints{
		PermittedURI: []string{ClusterTrustDomain(trustDomain, cluster)},
		// "" matches every name of its form: these exclude them all.
		ExcludedDNS:   []string{""},
		ExcludedEmail: []string{""},
		ExcludedIP:    excludedIPs,
	}
}

func (c constraints) String() string {
	var parts []string
	add := func(what string, names []string) {
		if len(names) == 0 {
			return
		}
		q := make([]string, len(names))
		for i, n := range names {
			if n == "" {
				n = "(all)"
			}
			q[i] = n
		}
		parts = append(parts, what+" "+strings.Join(q, ","))
	}
	ips := func(nets []*net.IPNet) []string {
		var out []string
		for _, n := range nets {
			out = append(out, n.String())
		}
		return out
	}
	add("permitted URI", c.PermittedURI)
	add("permitted DNS", c.PermittedDNS)
	add("permitted email", c.PermittedEmail)
	add("permitted IP", ips(c.PermittedIP))
	add("excluded URI", c.ExcludedURI)
	add("excluded DNS", c.ExcludedDNS)
	add("excluded email", c.ExcludedEmail)
	add("excluded IP", ips(c.ExcludedIP))
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

func (c constraints) equal(o constraints) bool {
	sameNets := func(a, b []*net.IPNet) bool {
		return len(a) == len(b) && !slices.ContainsFunc(a, func(n *net.IPNet) bool {
			return !slices.ContainsFunc(b, func(m *net.IPNet) bool { return n.String() == m.String() })
		})
	}
	sameNames := func(a, b []string) bool {
		return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
	}
	return sameNames(c.PermittedURI, o.PermittedURI) && sameNames(c.PermittedDNS, o.PermittedDNS) &&
		sameNames(c.PermittedEmail, o.PermittedEmail) && sameNets(c.PermittedIP, o.PermittedIP) &&
		sameNames(c.ExcludedURI, o.ExcludedURI) && sameNames(c.ExcludedDNS, o.ExcludedDNS) &&
		sameNames(c.ExcludedEmail, o.ExcludedEmail) && sameNets(c.ExcludedIP, o.ExcludedIP)
}

// marshal encodes c as the value of a name constraints extension.
func (c constraints) marshal() ([]byte, error) {
	subtrees := func(uris, dns, emails []string, ips []*net.IPNet) []generalSubtree {
		var out []generalSubtree
		name := func(tag int, b []byte) {
			out = append(out, generalSubtree{Base: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, Bytes: b}, Maximum: -1})
		}
		for _, d := range dns {
			name(tagDNS, []byte(d))
		}
		for _, n := range ips {
			ip := n.IP
			if ip4 := ip.To4(); ip4 != nil && len(n.Mask) == net.IPv4len {
				ip = ip4
			}
			name(tagIP, append(append([]byte{}, ip...), n.Mask...))
		}
		for _, e := range emails {
			name(tagEmail, []byte(e))
		}
		for _, u := range uris {
			name(tagURI, []byte(u))
		}
		return out
	}
	return asn1.Marshal(nameConstraintsDER{
		Permitted: subtrees(c.PermittedURI, c.PermittedDNS, c.PermittedEmail, c.PermittedIP),
		Excluded:  subtrees(c.ExcludedURI, c.ExcludedDNS, c.ExcludedEmail, c.ExcludedIP),
	})
}

// parseConstraints decodes the value of a name constraints extension. Name forms
// other than DNS, IP, email and URI are refused: meshfed never asks for them.
func parseConstraints(der []byte) (constraints, error) {
	var nc nameConstraintsDER
	if rest, err := asn1.Unmarshal(der, &nc); err != nil || len(rest) > 0 {
		return constraints{}, invalidf("name constraints do not parse")
	}
	var c constraints
	read := func(subtrees []generalSubtree, uris, dns, emails *[]string, ips *[]*net.IPNet) error {
		for _, s := range subtrees {
			if s.Minimum != 0 || s.Maximum != -1 {
				return invalidf("name constraints carry a minimum or maximum, which RFC 5280 forbids")
			}
			b := s.Base
			if b.Class != asn1.ClassContextSpecific || b.IsCompound {
				return invalidf("name constraints hold a name form meshfed does not use (class %d, tag %d)", b.Class, b.Tag)
			}
			switch b.Tag {
			case tagDNS:
				*dns = append(*dns, string(b.Bytes))
			case tagEmail:
				*emails = append(*emails, string(b.Bytes))
			case tagURI:
				*uris = append(*uris, string(b.Bytes))
			case tagIP:
				if n := len(b.Bytes); n != 2*net.IPv4len && n != 2*net.IPv6len {
					return invalidf("name constraints hold an IP range of %d bytes", n)
				}
				half := len(b.Bytes) / 2
				*ips = append(*ips, &net.IPNet{IP: net.IP(b.Bytes[:half]), Mask: net.IPMask(b.Bytes[half:])})
			default:
				return invalidf("name constraints hold a name form meshfed does not use (tag %d)", b.Tag)
			}
		}
		return nil
	}
	if err := read(nc.Permitted, &c.PermittedURI, &c.PermittedDNS, &c.PermittedEmail, &c.PermittedIP); err != nil {
		return constraints{}, err
	}
	if err := read(nc.Excluded, &c.ExcludedURI, &c.ExcludedDNS, &c.ExcludedEmail, &c.ExcludedIP); err != nil {
		return constraints{}, err
	}
	return c, nil
}

// certConstraints reads what crypto/x509 parsed of a certificate's name constraints.
func certConstraints(cert *x509.Certificate) constraints {
	return constraints{
		PermittedURI: cert.PermittedURIDomains, PermittedDNS: cert.PermittedDNSDomains,
		PermittedEmail: cert.PermittedEmailAddresses, PermittedIP: cert.PermittedIPRanges,
		ExcludedURI: cert.ExcludedURIDomains, ExcludedDNS: cert.ExcludedDNSDomains,
		ExcludedEmail: cert.ExcludedEmailAddresses, ExcludedIP: cert.ExcludedIPRanges,
	}
}

// clusterConstraintsExtension is the extension cluster's intermediate CSR carries.
func clusterConstraintsExtension(trustDomain, cluster string) (pkix.Extension, error) {
	der, err := clusterConstraints(trustDomain, cluster).marshal()
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidNameConstraints, Critical: true, Value: der}, nil
}

// checkCSRConstraints checks a CSR's name constraints extension against cluster's.
func checkCSRConstraints(ext pkix.Extension, trustDomain, cluster string) error {
	want := clusterConstraints(trustDomain, cluster)
	if !ext.Critical {
		return invalidf("CSR name constraints are not critical; a verifier that does not know them must refuse the chain, so they must be")
	}
	got, err := parseConstraints(ext.Value)
	if err != nil {
		return fmt.Errorf("CSR: %w", err)
	}
	if !got.equal(want) {
		return invalidf("CSR name constraints are {%s}; cluster %q's intermediate must carry exactly {%s}", got, cluster, want)
	}
	return nil
}

// CheckIntermediateBound reports whether cert, a member cluster's intermediate, is
// bound to its cluster: it carries the critical name constraints of the cluster its
// SPIFFE ID names (permitted URI domain <cluster>.<trust-domain> only; every DNS
// name, IP address and email address excluded), and a path length, when it has one,
// of 0. An intermediate signed before identities were bound to clusters has no name
// constraints and fails: it is due for renewal (IntermediateNeedsRenewal).
//
// cert-manager's CA issuer drops the path length a CSR asks for (it copies name
// constraints, not path lengths), so an intermediate it signed has none; the mesh
// root's path length 1 is what keeps an intermediate from signing CAs below it.
func CheckIntermediateBound(cert *x509.Certificate) error {
	td, cluster, err := clusterFromCert(cert)
	if err != nil {
		return err
	}
	if !cert.IsCA {
		return invalidf("certificate %q is not a CA", cert.Subject)
	}
	if cert.MaxPathLen > 0 {
		return invalidf("intermediate of cluster %q has path length %d; it may sign no CA (want 0 or none under a root of path length 1)", cluster, cert.MaxPathLen)
	}
	want := clusterConstraints(td, cluster)
	got := certConstraints(cert)
	if got.equal(constraints{}) {
		return invalidf("intermediate of cluster %q has no name constraints: it was signed before identities were bound to clusters and may sign any identity; it needs renewing", cluster)
	}
	if !cert.PermittedDNSDomainsCritical {
		return invalidf("intermediate of cluster %q has name constraints that are not critical", cluster)
	}
	if !got.equal(want) {
		return invalidf("intermediate of cluster %q has name constraints {%s}, want {%s}", cluster, got, want)
	}
	return nil
}

// IntermediateNeedsRenewal reports whether a member cluster's intermediate should be
// renewed at now: when NeedsRenewal says so, and when it is not bound to its cluster
// (CheckIntermediateBound), so that intermediates signed before name constraints are
// replaced on upgrade.
func IntermediateNeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	return NeedsRenewal(cert, now) || CheckIntermediateBound(cert) != nil
}
