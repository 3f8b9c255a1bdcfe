package xds

import (
	"slices"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Load assignments are most of what the server sends, and most of a load assignment
// is its localities' endpoints, the same in every group's (only priorities and
// weights differ) and the same from one change to the next but for the locality that
// changed. So a locality's endpoints are validated and serialized once (a piece), and
// each group's load assignment is assembled from a small header of its own and the
// pieces: a protobuf message's encodings concatenate into the message that merges
// them, repeated fields appended in order. The result decodes to exactly what
// loadAssignment builds (TestAssembledAssignments).

// piece is the serialized endpoints of one locality: the encoding of a
// LocalityLbEndpoints holding only them.
type piece struct {
	endpoints []Endpoint
	bytes     []byte
}

type pieceKey struct{ cluster, zone string }

// pieces are one target's pieces, by locality, reused while a locality's endpoints
// stay the same. A target that changes starts a new set from the old one (next), so
// that the pieces of localities gone are dropped with it.
type pieces struct {
	byLocality map[pieceKey]*piece
	prev       *pieces
}

// next is a set that reuses p's pieces.
func (p *pieces) next() *pieces {
	return &pieces{byLocality: map[pieceKey]*piece{}, prev: p}
}

// of returns the piece of l's endpoints, serializing it if no equal one exists.
func (p *pieces) of(l LocalityEndpoints) ([]byte, error) {
	k := pieceKey{l.Cluster, l.Zone}
	if pc, ok := p.byLocality[k]; ok && slices.Equal(pc.endpoints, l.Endpoints) {
		return pc.bytes, nil
	}
	if p.prev != nil {
		if pc, ok := p.prev.byLocality[k]; ok && slices.Equal(pc.endpoints, l.Endpoints) {
			p.byLocality[k] = pc
			return pc.bytes, nil
		}
	}
	m := &endpointv3.LocalityLbEndpoints{LbEndpoints: lbEndpoints(l.Endpoints)}
	for _, e := range m.LbEndpoints {
		if err := e.ValidateAll(); err != nil {
			return nil, err
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	p.byLocality[k] = &piece{endpoints: l.Endpoints, bytes: b}
	return b, nil
}

// forget drops the previous set once every group was built from the new one.
func (p *pieces) forget() { p.prev = nil }

// endpointsField is the field number of ClusterLoadAssignment.endpoints.
var endpointsField = (&endpointv3.ClusterLoadAssignment{}).ProtoReflect().Descriptor().Fields().ByName("endpoints").Number()

// assemble is the load assignment of hostname:port with localities, serialized from
// a header and the localities' pieces, at version.
func (b *builder) assemble(hostname string, port uint32, localities []LocalityEndpoints, p *pieces) (*resource, error) {
	head := loadAssignment(hostname, port, nil)
	if err := head.ValidateAll(); err != nil {
		return nil, err
	}
	out, err := proto.MarshalOptions{Deterministic: true}.Marshal(head)
	if err != nil {
		return nil, err
	}
	for _, l := range localities {
		lh := localityHeader(l)
		if err := lh.ValidateAll(); err != nil {
			return nil, err
		}
		hb, err := proto.MarshalOptions{Deterministic: true}.Marshal(lh)
		if err != nil {
			return nil, err
		}
		eb, err := p.of(l)
		if err != nil {
			return nil, err
		}
		out = protowire.AppendTag(out, endpointsField, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(len(hb)+len(eb)))
		out = append(append(out, hb...), eb...)
	}
	return newResource(b.next(), &anypb.Any{TypeUrl: resourcev3.EndpointType, Value: out}), nil
}

// localityHeader is a locality of a load assignment without its endpoints.
func localityHeader(l LocalityEndpoints) *endpointv3.LocalityLbEndpoints {
	return &endpointv3.LocalityLbEndpoints{
		Locality:            localityOf(l),
		LoadBalancingWeight: wrapperspb.UInt32(l.Weight),
		Priority:            l.Priority,
	}
}
