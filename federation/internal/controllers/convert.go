package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// clusterInfo is the etcd record of a MeshCluster.
func clusterInfo(mc *v1.MeshCluster) *model.ClusterInfo {
	info := &model.ClusterInfo{
		Name:    mc.Name,
		Region:  string(mc.Spec.Region),
		Network: mc.Spec.Network,
		Labels:  mc.Labels,
		// As the API server defaulted them; a zero would take its default in every
		// reader.
		Limits: model.PublishLimits{MaxServices: mc.Spec.Limits.MaxServices,
			MaxEndpointsPerService: mc.Spec.Limits.MaxEndpointsPerService, MaxValueBytes: mc.Spec.Limits.MaxValueBytes},
		// The hub renews only this registration's etcd certificates.
		Registration: mc.Spec.Registration,
	}
	if info.Network == "" {
		info.Network = v1.DefaultNetwork
	}
	for _, z := range mc.Spec.Zones {
		info.Zones = append(info.Zones, string(z))
	}
	for _, r := range mc.Spec.AddressRanges {
		info.AddressRanges = append(info.AddressRanges, string(r))
	}
	for _, g := range mc.Spec.Gateways {
		port := g.Port
		if port == 0 {
			port = v1.DefaultGatewayPort
		}
		info.Gateways = append(info.Gateways, model.Gateway{Address: g.Address, Port: port})
	}
	return info
}

// globalService is the etcd record of a GlobalService, with defaults resolved.
func globalService(gs *v1.GlobalService) *model.GlobalService {
	rec := &model.GlobalService{
		Namespace: gs.Namespace,
		Name:      gs.Name,
		Hostname:  hostnameOf(gs),
		Selector:  gs.Spec.Selector,
	}
	switch {
	case gs.Spec.Service != nil:
		rec.Service = &model.ServiceRef{Namespace: gs.Spec.Service.Namespace, Name: gs.Spec.Service.Name}
		if rec.Service.Namespace == "" {
			rec.Service.Namespace = gs.Namespace
		}
	case gs.Spec.Selector == nil:
		rec.Service = &model.ServiceRef{Namespace: gs.Namespace, Name: gs.Name}
	}
	for _, p := range gs.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(v1.ProtocolTCP)
		}
		rec.Ports = append(rec.Ports, model.GlobalPort{Name: p.Name, Port: p.Port, Protocol: proto})
	}
	for _, c := range gs.Spec.Clusters {
		rec.Clusters = append(rec.Clusters, string(c))
	}
	if gs.Spec.FailoverPolicyRef != nil {
		rec.Policy = gs.Spec.FailoverPolicyRef.Name
	}
	return rec
}

// policy is the etcd record of a FailoverPolicy, with the API server's defaults
// resolved again here so that an object written before a default existed still
// converts.
func policy(fp *v1.FailoverPolicy) *model.Policy {
	s := fp.Spec
	rec := &model.Policy{
		Namespace:          fp.Namespace,
		Name:               fp.Name,
		LocalityPreference: string(s.LocalityPreference),
		FallbackToAny:      ptr.Deref(s.FallbackToAny, v1.DefaultFallbackToAny),
		MinHealthyPercent:  ptr.Deref(s.MinHealthyPercent, v1.DefaultMinHealthyPercent),
		FailbackHold:       ptr.Deref(s.FailbackHold, metav1.Duration{Duration: v1.DefaultFailbackHold}),
		DemoteAfter:        ptr.Deref(s.StaleCluster.DemoteAfter, metav1.Duration{Duration: v1.DefaultDemoteAfter}),
		DropAfter:          ptr.Deref(s.StaleCluster.DropAfter, metav1.Duration{Duration: v1.DefaultDropAfter}),
	}
	if rec.LocalityPreference == "" {
		rec.LocalityPreference = string(v1.DefaultLocalityPreference)
	}
	for _, r := range s.Failover {
		rule := model.FailoverRule{From: locality(r.From)}
		for _, t := range r.To {
			rule.To = append(rule.To, locality(t))
		}
		rec.Failover = append(rec.Failover, rule)
	}
	for _, r := range s.Distribute {
		rule := model.DistributeRule{From: string(r.From)}
		for _, t := range r.To {
			rule.To = append(rule.To, model.WeightedLocality{Locality: string(t.Locality), Weight: t.Weight})
		}
		rec.Distribute = append(rec.Distribute, rule)
	}
	return rec
}

func locality(l v1.LocalitySelector) model.Locality {
	return model.Locality{Region: string(l.Region), Cluster: string(l.Cluster)}
}
