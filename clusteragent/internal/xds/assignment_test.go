package xds

import (
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
)

// TestAssembledAssignments: a load assignment assembled from pieces decodes to
// exactly what loadAssignment builds, whatever the pieces reused from an earlier
// set, and a locality whose endpoints changed gets a new piece.
func TestAssembledAssignments(t *testing.T) {
	a := []Endpoint{{Address: "10.0.0.1", Port: 80}, {Address: "10.0.0.2", Port: 80}}
	b := []Endpoint{{Address: "10.1.0.1", Port: 8080}}
	tables := [][]LocalityEndpoints{
		nil,
		{{Cluster: "delta", Priority: 0, Weight: 300, Endpoints: b}, {Zone: "z9", Cluster: "epsilon", Priority: 128, Weight: 1}},
		{{Region: "r", Zone: "z1", Cluster: "alpha", Priority: 0, Weight: 2, Endpoints: a}},
		{{Region: "r", Zone: "z1", Cluster: "alpha", Priority: 0, Weight: 2, Endpoints: a},
			{Region: "r", Zone: "z2", Cluster: "beta", Priority: 1, Weight: 1, Endpoints: b},
			{Region: "s", Zone: "z3", Cluster: "gamma", Priority: 2, Weight: 1}},
		{{Region: "r", Zone: "z1", Cluster: "alpha", Priority: 1, Weight: 1, Endpoints: a[:1]},
			{Region: "r", Zone: "z2", Cluster: "beta", Priority: 0, Weight: 1, Endpoints: b}},
	}
	var bld builder
	p := &pieces{byLocality: map[pieceKey]*piece{}}
	for i, table := range tables {
		p = p.next()
		r, err := bld.assemble("cart.shop.global", 8080, table, p)
		if err != nil {
			t.Fatal(err)
		}
		got := &endpointv3.ClusterLoadAssignment{}
		if err := r.any.UnmarshalTo(got); err != nil {
			t.Fatalf("table %d: %v", i, err)
		}
		if want := loadAssignment("cart.shop.global", 8080, table); !proto.Equal(got, want) {
			t.Errorf("table %d: assembled\n%v\nwant\n%v", i, got, want)
		}
		p.forget()
	}
	// alpha/z1 changed from two endpoints to one: a new piece; beta/z2 kept its own.
	if pc := p.byLocality[pieceKey{"alpha", "z1"}]; len(pc.endpoints) != 1 {
		t.Errorf("alpha/z1's piece holds %d endpoints, want 1", len(pc.endpoints))
	}
}
