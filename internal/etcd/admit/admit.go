package admit

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Reasons of refusal, CamelCase as in view.Rejection and status conditions.
const (
	// ZoneNotDeclared: an endpoint in a zone the cluster does not declare.
	ZoneNotDeclared = "ZoneNotDeclared"
	// AddressReserved: a loopback, link-local, unspecified or multicast address.
	AddressReserved = "AddressReserved"
	// AddressOutOfRange: an address outside the cluster's address ranges.
	AddressOutOfRange = "AddressOutOfRange"
	// DuplicateAddress: an address already in the record (the first is kept).
	DuplicateAddress = "DuplicateAddress"
	// InvalidLabels: an endpoint with more than model.MaxEndpointLabels labels, or
	// a key or value Kubernetes would refuse.
	InvalidLabels = "InvalidLabels"
	// TooManyEndpoints: endpoints beyond MaxEndpointsPerService.
	TooManyEndpoints = "TooManyEndpoints"
	// TooManyServices: a whole record beyond MaxServices, in key order.
	TooManyServices = "TooManyServices"
	// RecordTooLarge: a value larger than MaxValueBytes, never decoded.
	RecordTooLarge = "RecordTooLarge"
	// ServiceNotAuthorized: a record of a service whose GlobalService does not
	// name the cluster among its clusters: it contributes nothing to it.
	ServiceNotAuthorized = "ServiceNotAuthorized"
)

// PerRecord reports whether a reason counts whole records (TooManyServices,
// RecordTooLarge, ServiceNotAuthorized) rather than endpoints.
func PerRecord(reason string) bool {
	switch reason {
	case TooManyServices, RecordTooLarge, ServiceNotAuthorized:
		return true
	}
	return false
}

// Rejection is what Record refused of one record for one reason (and, for
// ZoneNotDeclared, one zone): how many endpoints, and the first one's detail.
type Rejection struct {
	Reason string
	// Zone is the refused endpoints' zone when they share one (always for
	// ZoneNotDeclared), else "".
	Zone   string
	Count  int
	Detail string
}

// Limits are a cluster's effective publish limits: its ClusterInfo's, with the
// defaults (v1alpha1.DefaultMax*) for zero or absent fields.
type Limits struct {
	Services, EndpointsPerService, ValueBytes int
}

// LimitsOf returns info's effective limits; info may be nil.
func LimitsOf(info *model.ClusterInfo) Limits {
	l := Limits{v1.DefaultMaxServices, v1.DefaultMaxEndpointsPerService, v1.DefaultMaxValueBytes}
	if info == nil {
		return l
	}
	if n := info.Limits.MaxServices; n > 0 {
		l.Services = int(n)
	}
	if n := info.Limits.MaxEndpointsPerService; n > 0 {
		l.EndpointsPerService = int(n)
	}
	if n := info.Limits.MaxValueBytes; n > 0 {
		l.ValueBytes = int(n)
	}
	return l
}

// MemberWritten reports whether keys of kind are written by member clusters (under
// their own cluster prefix): the kinds whose values are checked against the
// cluster's limits before they are decoded.
func MemberWritten(kind keyspace.Kind) bool {
	switch kind {
	case keyspace.KindServiceEndpoints, keyspace.KindClusterHeartbeat, keyspace.KindClusterSynced,
		keyspace.KindIntermediateCSR, keyspace.KindEtcdCSR, keyspace.KindProgrammed:
		return true
	}
	return false
}

// TooLarge returns the refusal of a value of size bytes under limit.
func TooLarge(size, limit int) Rejection {
	return Rejection{Reason: RecordTooLarge, Count: 1,
		Detail: fmt.Sprintf("value of %d bytes exceeds the limit of %d bytes", size, limit)}
}

// Record admits rec, a record of the cluster info describes: it returns rec itself
// when everything in it is allowed, else a copy without what is not, and the
// refusals sorted by reason and zone. It never modifies rec.
func Record(info *model.ClusterInfo, rec *model.ServiceEndpoints) (*model.ServiceEndpoints, []Rejection) {
	ranges := parseRanges(info.AddressRanges)
	limits := LimitsOf(info)
	type group struct{ reason, zone string }
	var rejected map[group]*Rejection
	refuse := func(reason, zone, detail string) {
		if rejected == nil {
			rejected = map[group]*Rejection{}
		}
		g := group{reason, zone}
		r := rejected[g]
		if r == nil {
			r = &Rejection{Reason: reason, Zone: zone, Detail: detail}
			rejected[g] = r
		}
		r.Count++
	}

	keep := make([]bool, len(rec.Endpoints))
	addrs := make([]netip.Addr, len(rec.Endpoints))
	// An endpoint is its address and ports: host-network pods of one node share
	// an address on different ports.
	seen := make(map[string]bool, len(rec.Endpoints))
	kept := 0
	for i, e := range rec.Endpoints {
		addr, err := netip.ParseAddr(e.Address)
		if err != nil { // model.Decode refuses such records; unreachable from a reader
			refuse(AddressReserved, "", fmt.Sprintf("%q is not an IP address", e.Address))
			continue
		}
		addr = addr.Unmap()
		inRange := slices.ContainsFunc(ranges, func(p netip.Prefix) bool { return p.Contains(addr) })
		switch {
		case reserved(addr) != "" && !inRange:
			refuse(AddressReserved, "", fmt.Sprintf("%s is %s", addr, reserved(addr)))
		case len(ranges) > 0 && !inRange:
			refuse(AddressOutOfRange, "", fmt.Sprintf("%s is outside %s", addr, strings.Join(info.AddressRanges, ", ")))
		case e.Zone != "" && !slices.Contains(info.Zones, e.Zone):
			refuse(ZoneNotDeclared, e.Zone, fmt.Sprintf("%s claims zone %s it does not declare", info.Name, e.Zone))
		case labelsInvalid(e.Labels) != "":
			refuse(InvalidLabels, "", fmt.Sprintf("%s: %s", addr, labelsInvalid(e.Labels)))
		case seen[endpointKey(addr, e.Ports)]:
			refuse(DuplicateAddress, "", fmt.Sprintf("%s appears more than once", addr))
		default:
			seen[endpointKey(addr, e.Ports)], keep[i], addrs[i] = true, true, addr
			kept++
		}
	}
	if kept > limits.EndpointsPerService {
		// The lowest addresses stay (by address, then place in the record), whatever
		// the order of the record.
		idx := make([]int, 0, kept)
		for i := range keep {
			if keep[i] {
				idx = append(idx, i)
			}
		}
		slices.SortStableFunc(idx, func(a, b int) int { return addrs[a].Compare(addrs[b]) })
		for _, i := range idx[limits.EndpointsPerService:] {
			keep[i] = false
			refuse(TooManyEndpoints, "", fmt.Sprintf("%d endpoints exceed the limit of %d per service", kept, limits.EndpointsPerService))
		}
	}
	if rejected == nil {
		return rec, nil
	}
	out := *rec
	out.Endpoints = make([]model.Endpoint, 0, len(rec.Endpoints))
	for i, e := range rec.Endpoints {
		if keep[i] {
			out.Endpoints = append(out.Endpoints, e)
		}
	}
	rs := make([]Rejection, 0, len(rejected))
	for _, r := range rejected {
		rs = append(rs, *r)
	}
	slices.SortFunc(rs, func(a, b Rejection) int { return cmp.Or(cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.Zone, b.Zone)) })
	return &out, rs
}

func endpointKey(addr netip.Addr, ports []model.EndpointPort) string {
	ps := make([]string, len(ports))
	for i, p := range ports {
		ps[i] = p.Name + ":" + strconv.Itoa(int(p.Port))
	}
	slices.Sort(ps)
	return addr.String() + "/" + strings.Join(ps, ",")
}

// reserved says what kind of address addr is if it may not be an endpoint: "" if
// it may.
func reserved(addr netip.Addr) string {
	switch {
	case addr.IsLoopback():
		return "loopback"
	case addr.IsLinkLocalUnicast():
		return "link-local"
	case addr.IsUnspecified():
		return "unspecified"
	case addr.IsMulticast():
		return "multicast"
	}
	return ""
}

// parseRanges parses CIDRs; one that does not parse is left out (the hub validates
// them), so a cluster whose ranges all fail admits no address.
func parseRanges(cidrs []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p.Masked())
		} else {
			out = append(out, netip.Prefix{}) // contains nothing: keeps ranges non-empty
		}
	}
	return out
}

// Summary renders rejections as one line for logs: "ZoneNotDeclared 200
// (beta claims zone us-east-1a it does not declare)".
func Summary(rs []Rejection) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.Reason + " " + strconv.Itoa(r.Count) + " (" + r.Detail + ")")
	}
	return b.String()
}

// labelsInvalid says what is wrong with an endpoint's labels, "" if nothing.
func labelsInvalid(labels map[string]string) string {
	if len(labels) > model.MaxEndpointLabels {
		return fmt.Sprintf("%d labels, more than %d", len(labels), model.MaxEndpointLabels)
	}
	for k, v := range labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Sprintf("label key %q: %s", k, errs[0])
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Sprintf("label %s value %q: %s", k, v, errs[0])
		}
	}
	return ""
}
