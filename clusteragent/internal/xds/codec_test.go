package xds

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestResponseCodec: a response the codec writes decodes to the response, and its
// resources' bytes are the shared ones, not copies; anything else is the proto
// codec's.
func TestResponseCodec(t *testing.T) {
	shared := &anypb.Any{TypeUrl: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", Value: []byte{0x0a, 0x03, 'a', 'b', 'c'}}
	c := newResponseCodec()
	for name, resp := range map[string]*discoverygrpc.DiscoveryResponse{
		"plain":   {VersionInfo: "7", TypeUrl: shared.TypeUrl, Nonce: "12", Resources: []*anypb.Any{shared, shared}},
		"empty":   {},
		"no type": {Nonce: "1", Resources: []*anypb.Any{{Value: []byte{1}}, {}}},
		"canary":  {VersionInfo: "1", Canary: true, Resources: []*anypb.Any{shared}},
		"control": {VersionInfo: "1", ControlPlane: &corev3.ControlPlane{Identifier: "x"}},
	} {
		out, err := c.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		got := &discoverygrpc.DiscoveryResponse{}
		if err := proto.Unmarshal(out.Materialize(), got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !proto.Equal(got, resp) {
			t.Errorf("%s: decoded %v, want %v", name, got, resp)
		}
		if name == "plain" {
			n := 0
			for _, b := range out {
				if d := b.ReadOnlyData(); len(d) > 0 && &d[0] == &shared.Value[0] {
					n++
				}
			}
			if n != 2 {
				t.Errorf("the response holds %d references to the shared bytes, want 2 (one per resource): copied", n)
			}
		}
		out.Free()
	}
	// Requests decode as with the proto codec.
	req := &discoverygrpc.DiscoveryRequest{VersionInfo: "3", TypeUrl: shared.TypeUrl, ResourceNames: []string{"a"}}
	b, _ := proto.Marshal(req)
	got := &discoverygrpc.DiscoveryRequest{}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil || !proto.Equal(got, req) {
		t.Errorf("request decoded %v, %v; want %v", got, err, req)
	}
}
