package xds

import (
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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
	if pc, ok := p.byLocality[k]; ok && sameEndpoints(pc.endpoints, l.Endpoints) {
		return pc.bytes, nil
	}
	if p.prev != nil {
		if pc, ok := p.prev.byLocality[k]; ok && sameEndpoints(pc.endpoints, l.Endpoints) {
			p.byLocality[k] = pc
			return pc.bytes, nil
		}
	}
	b, err := appendLbEndpoints(nil, l.Endpoints)
	if err != nil {
		return nil, err
	}
	p.byLocality[k] = &piece{endpoints: l.Endpoints, bytes: b}
	return b, nil
}

// sameEndpoints reports whether a and b list the same endpoints: at once when they
// are one slice (every group's table of a target shares its localities' slices).
func sameEndpoints(a, b []Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return slices.Equal(a, b)
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
	// Each locality is its header and its piece; the buffer is sized once.
	bodies := make([][]byte, len(localities))
	heads := make([]int, len(localities))
	size := proto.Size(head)
	for i, l := range localities {
		n, err := localityHeaderSize(l)
		if err != nil {
			return nil, err
		}
		eb, err := p.of(l)
		if err != nil {
			return nil, err
		}
		bodies[i], heads[i] = eb, n
		size += protowire.SizeTag(endpointsField) + protowire.SizeBytes(n+len(eb))
	}
	out, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(make([]byte, 0, size), head)
	if err != nil {
		return nil, err
	}
	for i, l := range localities {
		out = protowire.AppendTag(out, endpointsField, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(heads[i]+len(bodies[i])))
		out = appendLocalityHeader(out, l)
		out = append(out, bodies[i]...)
	}
	return newResource(b.next(), &anypb.Any{TypeUrl: resourcev3.EndpointType, Value: out}), nil
}

// Field numbers of what a piece and a locality's header hold, from the generated
// descriptors.
var (
	localityField    = field(&endpointv3.LocalityLbEndpoints{}, "locality")
	weightField      = field(&endpointv3.LocalityLbEndpoints{}, "load_balancing_weight")
	priorityField    = field(&endpointv3.LocalityLbEndpoints{}, "priority")
	regionField      = field(&corev3.Locality{}, "region")
	zoneField        = field(&corev3.Locality{}, "zone")
	subZoneField     = field(&corev3.Locality{}, "sub_zone")
	wrapperValue     = field(&wrapperspb.UInt32Value{}, "value")
	lbEndpointsField = field(&endpointv3.LocalityLbEndpoints{}, "lb_endpoints")
	lbEndpointField  = field(&endpointv3.LbEndpoint{}, "endpoint")
	healthField      = field(&endpointv3.LbEndpoint{}, "health_status")
	endpointAddress  = field(&endpointv3.Endpoint{}, "address")
	socketField      = field(&corev3.Address{}, "socket_address")
	socketAddrField  = field(&corev3.SocketAddress{}, "address")
	socketPortField  = field(&corev3.SocketAddress{}, "port_value")
)

func field(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// appendLbEndpoints appends the lb_endpoints of a LocalityLbEndpoints listing
// endpoints, each healthy, as lbEndpoints builds them: serialized directly, being
// most of what the server ever serializes. The checks are the generated validation's
// rules for these fields.
func appendLbEndpoints(b []byte, endpoints []Endpoint) ([]byte, error) {
	for _, e := range endpoints {
		if e.Address == "" || e.Port > 65535 {
			return nil, fmt.Errorf("invalid endpoint %q port %d", e.Address, e.Port)
		}
		socket := protowire.SizeTag(socketAddrField) + protowire.SizeBytes(len(e.Address)) +
			protowire.SizeTag(socketPortField) + protowire.SizeVarint(uint64(e.Port))
		address := protowire.SizeTag(socketField) + protowire.SizeBytes(socket)
		endpoint := protowire.SizeTag(endpointAddress) + protowire.SizeBytes(address)
		lb := protowire.SizeTag(lbEndpointField) + protowire.SizeBytes(endpoint) +
			protowire.SizeTag(healthField) + protowire.SizeVarint(uint64(corev3.HealthStatus_HEALTHY))
		b = protowire.AppendTag(b, lbEndpointsField, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(lb))
		b = protowire.AppendTag(b, lbEndpointField, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(endpoint))
		b = protowire.AppendTag(b, endpointAddress, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(address))
		b = protowire.AppendTag(b, socketField, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(socket))
		b = protowire.AppendTag(b, socketAddrField, protowire.BytesType)
		b = protowire.AppendString(b, e.Address)
		b = protowire.AppendTag(b, socketPortField, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.Port))
		b = protowire.AppendTag(b, healthField, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(corev3.HealthStatus_HEALTHY))
	}
	return b, nil
}

// localityHeaderSize is the size of localityHeader(l)'s encoding, or why l is
// invalid: the generated validation's rules for these fields.
func localityHeaderSize(l LocalityEndpoints) (int, error) {
	if l.Weight < 1 || l.Priority > 128 {
		return 0, fmt.Errorf("invalid locality %s/%s/%s: weight %d, priority %d", l.Region, l.Zone, l.Cluster, l.Weight, l.Priority)
	}
	n := protowire.SizeTag(localityField) + protowire.SizeBytes(localitySize(l)) +
		protowire.SizeTag(weightField) + protowire.SizeBytes(weightSize(l))
	if l.Priority != 0 {
		n += protowire.SizeTag(priorityField) + protowire.SizeVarint(uint64(l.Priority))
	}
	return n, nil
}

func localitySize(l LocalityEndpoints) int {
	n := 0
	for _, f := range [...]struct {
		n protowire.Number
		v string
	}{{regionField, l.Region}, {zoneField, l.Zone}, {subZoneField, l.Cluster}} {
		if f.v != "" {
			n += protowire.SizeTag(f.n) + protowire.SizeBytes(len(f.v))
		}
	}
	return n
}

func weightSize(l LocalityEndpoints) int {
	return protowire.SizeTag(wrapperValue) + protowire.SizeVarint(uint64(l.Weight))
}

// appendLocalityHeader appends the encoding of localityHeader(l), serialized
// directly like the pieces; localityHeaderSize has checked l.
func appendLocalityHeader(b []byte, l LocalityEndpoints) []byte {
	b = protowire.AppendTag(b, localityField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(localitySize(l)))
	for _, f := range [...]struct {
		n protowire.Number
		v string
	}{{regionField, l.Region}, {zoneField, l.Zone}, {subZoneField, l.Cluster}} {
		if f.v != "" {
			b = protowire.AppendTag(b, f.n, protowire.BytesType)
			b = protowire.AppendString(b, f.v)
		}
	}
	b = protowire.AppendTag(b, weightField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(weightSize(l)))
	b = protowire.AppendTag(b, wrapperValue, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(l.Weight))
	if l.Priority != 0 {
		b = protowire.AppendTag(b, priorityField, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(l.Priority))
	}
	return b
}

// localityHeader is a locality of a load assignment without its endpoints.
func localityHeader(l LocalityEndpoints) *endpointv3.LocalityLbEndpoints {
	return &endpointv3.LocalityLbEndpoints{
		Locality:            localityOf(l),
		LoadBalancingWeight: wrapperspb.UInt32(l.Weight),
		Priority:            l.Priority,
	}
}
