package publish

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Build returns the record of svc: its ports, and the endpoints of those of slices
// that belong to it among endpointSlices (same namespace, label kubernetes.io/service-name = svc.Name);
// other slices are ignored, so callers may pass a superset. nodeZones maps node names
// to their topology.kubernetes.io/zone label; exportedBy is what Exporters returned.
//
// The result depends only on its inputs, not on their order: equal inputs give a
// byte-identical model.Encode, which lets the writer skip unchanged values.
//
//   - Ports are the Service's, in the Service's order (an order its owner chose).
//   - Only slices of address type IPv4 or IPv6 count (FQDN slices name hosts, not
//     addresses). Of an endpoint, only the first address counts: the API defines no
//     meaning for the others, and kube-proxy ignores them too. Addresses are written
//     in canonical form; an endpoint whose address does not parse is skipped.
//   - Conditions follow the EndpointSlice API: a nil ready or serving means true, a
//     nil terminating means false. (Serving's nil once meant "same as ready"; the
//     API docs and kube-proxy now read it as true.)
//   - An endpoint's ports are its slice's ports by name, sorted; a slice port without
//     a port number (meaning "all ports") has nothing to publish and is left out.
//   - The zone is the endpoint's own, else its node's zone, else "".
//   - An endpoint is identified by its address and port set. The EndpointSlice
//     controller may briefly list one in two slices while it moves it; then the most
//     available copy (ready, then serving) wins, ties going to the slice whose name
//     sorts first.
//   - Endpoints are sorted by address (IPv4 before IPv6, numerically), then ports.
func Build(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, nodeZones map[string]string, exportedBy []string) model.ServiceEndpoints {
	out := model.ServiceEndpoints{
		Namespace: svc.Namespace,
		Name:      svc.Name,
		Ports:     make([]model.ServicePort, 0, len(svc.Spec.Ports)),
		Endpoints: []model.Endpoint{},
	}
	if len(exportedBy) > 0 {
		out.ExportedBy = slices.Compact(slices.Sorted(slices.Values(exportedBy)))
	}
	for _, p := range svc.Spec.Ports {
		out.Ports = append(out.Ports, model.ServicePort{
			Name:        p.Name,
			Port:        p.Port,
			Protocol:    string(p.Protocol),
			AppProtocol: deref(p.AppProtocol),
		})
	}

	own := make([]*discoveryv1.EndpointSlice, 0, len(endpointSlices))
	for _, s := range endpointSlices {
		if s != nil && s.Namespace == svc.Namespace && s.Labels[discoveryv1.LabelServiceName] == svc.Name &&
			(s.AddressType == discoveryv1.AddressTypeIPv4 || s.AddressType == discoveryv1.AddressTypeIPv6) {
			own = append(own, s)
		}
	}
	slices.SortFunc(own, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })

	type candidate struct {
		ep   model.Endpoint
		addr netip.Addr
		sig  string // the port set, for identity and ordering
	}
	byID := map[string]*candidate{}
	for _, s := range own {
		ports := endpointPorts(s.Ports)
		sig := portSignature(ports)
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			addr, err := netip.ParseAddr(e.Addresses[0])
			if err != nil {
				continue
			}
			ep := model.Endpoint{
				Address:     addr.String(),
				Zone:        zoneOf(e, nodeZones),
				TargetRef:   targetRef(e.TargetRef),
				Ready:       e.Conditions.Ready == nil || *e.Conditions.Ready,
				Serving:     e.Conditions.Serving == nil || *e.Conditions.Serving,
				Terminating: e.Conditions.Terminating != nil && *e.Conditions.Terminating,
				Ports:       ports,
			}
			id := ep.Address + "|" + sig
			if prev, ok := byID[id]; ok && availability(prev.ep) >= availability(ep) {
				continue
			}
			byID[id] = &candidate{ep: ep, addr: addr, sig: sig}
		}
	}

	cands := make([]*candidate, 0, len(byID))
	for _, c := range byID {
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b *candidate) int {
		return cmp.Or(a.addr.Compare(b.addr), strings.Compare(a.sig, b.sig))
	})
	for _, c := range cands {
		// Endpoints of one slice share a ports slice; give each its own so that no
		// caller can change two endpoints through one.
		c.ep.Ports = slices.Clone(c.ep.Ports)
		out.Endpoints = append(out.Endpoints, c.ep)
	}
	return out
}

// endpointPorts returns a slice's ports sorted by name, then port.
func endpointPorts(ports []discoveryv1.EndpointPort) []model.EndpointPort {
	out := make([]model.EndpointPort, 0, len(ports))
	for _, p := range ports {
		if p.Port == nil {
			continue
		}
		out = append(out, model.EndpointPort{Name: deref(p.Name), Port: *p.Port})
	}
	slices.SortFunc(out, func(a, b model.EndpointPort) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.Port, b.Port))
	})
	return out
}

func portSignature(ports []model.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		b.WriteString(p.Name)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(int(p.Port)))
		b.WriteByte(',')
	}
	return b.String()
}

// availability ranks duplicate copies of an endpoint.
func availability(e model.Endpoint) int {
	switch {
	case e.Ready:
		return 2
	case e.Serving:
		return 1
	}
	return 0
}

func zoneOf(e discoveryv1.Endpoint, nodeZones map[string]string) string {
	if z := deref(e.Zone); z != "" {
		return z
	}
	if e.NodeName != nil {
		return nodeZones[*e.NodeName]
	}
	return ""
}

func targetRef(ref *corev1.ObjectReference) string {
	switch {
	case ref == nil || ref.Name == "":
		return ""
	case ref.Kind == "":
		return ref.Name
	}
	return ref.Kind + "/" + ref.Name
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
