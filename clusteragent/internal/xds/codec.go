package xds

import (
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// responseCodec is gRPC's proto codec, except for the DiscoveryResponses the server
// sends: their resources go out as they are, the serialized Any every stream's
// response shares, where the proto codec would copy each into a buffer of its own
// for every stream. Only a response's own fields and each resource's few header
// bytes are written per stream. Requests, and any response with fields the server
// never sets, go through the proto codec.
type responseCodec struct{ proto encoding.CodecV2 }

func newResponseCodec() responseCodec { return responseCodec{proto: encoding.GetCodecV2(proto.Name)} }

// Name is the proto codec's: on the wire nothing differs.
func (c responseCodec) Name() string { return proto.Name }

func (c responseCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

// Field numbers of a DiscoveryResponse and an Any, from the generated descriptors.
var (
	respVersion   = field(&discoverygrpc.DiscoveryResponse{}, "version_info")
	respResources = field(&discoverygrpc.DiscoveryResponse{}, "resources")
	respTypeURL   = field(&discoverygrpc.DiscoveryResponse{}, "type_url")
	respNonce     = field(&discoverygrpc.DiscoveryResponse{}, "nonce")
	anyTypeURL    = field(&anypb.Any{}, "type_url")
	anyValue      = field(&anypb.Any{}, "value")
)

func (c responseCodec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(*discoverygrpc.DiscoveryResponse)
	if !ok || !plain(r) {
		return c.proto.Marshal(v)
	}
	var head []byte
	for _, f := range [...]struct {
		n protowire.Number
		v string
	}{{respVersion, r.GetVersionInfo()}, {respTypeURL, r.GetTypeUrl()}, {respNonce, r.GetNonce()}} {
		if f.v != "" {
			head = protowire.AppendTag(head, f.n, protowire.BytesType)
			head = protowire.AppendString(head, f.v)
		}
	}
	out := make(mem.BufferSlice, 0, 1+2*len(r.GetResources()))
	out = append(out, mem.SliceBuffer(head))
	for _, a := range r.GetResources() {
		n := 0
		if a.GetTypeUrl() != "" {
			n += protowire.SizeTag(anyTypeURL) + protowire.SizeBytes(len(a.GetTypeUrl()))
		}
		if len(a.GetValue()) > 0 {
			n += protowire.SizeTag(anyValue) + protowire.SizeBytes(len(a.GetValue()))
		}
		h := protowire.AppendTag(nil, respResources, protowire.BytesType)
		h = protowire.AppendVarint(h, uint64(n))
		if a.GetTypeUrl() != "" {
			h = protowire.AppendTag(h, anyTypeURL, protowire.BytesType)
			h = protowire.AppendString(h, a.GetTypeUrl())
		}
		if len(a.GetValue()) > 0 {
			h = protowire.AppendTag(h, anyValue, protowire.BytesType)
			h = protowire.AppendVarint(h, uint64(len(a.GetValue())))
		}
		out = append(out, mem.SliceBuffer(h))
		if len(a.GetValue()) > 0 {
			out = append(out, mem.SliceBuffer(a.GetValue())) // shared, never written
		}
	}
	return out, nil
}

// plain reports whether r holds only what the server's responses hold: a version,
// a type, a nonce and resources without unknown fields.
func plain(r *discoverygrpc.DiscoveryResponse) bool {
	if r.GetCanary() || r.GetControlPlane() != nil || len(r.GetResourceErrors()) > 0 || len(r.ProtoReflect().GetUnknown()) > 0 {
		return false
	}
	for _, a := range r.GetResources() {
		if a == nil || len(a.ProtoReflect().GetUnknown()) > 0 {
			return false
		}
	}
	return true
}
