package publish

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// agentView is the agent's adapter of a view.View (clusteragent publishView).
type agentView struct{ *view.View }

func (a agentView) PublishedServices() []string { return a.View.PublishedServices("east-1") }

// The publisher refuses what every reader would: records over the cluster's limits.
func TestWithinLimits(t *testing.T) {
	v := view.New(view.Options{})
	v.OnUpsert(keyspace.ClusterInfo("east-1"), &model.ClusterInfo{Name: "east-1", Region: "r", Zones: []string{"z"},
		Network: "default", Limits: model.PublishLimits{MaxEndpointsPerService: 2, MaxValueBytes: 600}})
	p, err := New(Options{Cluster: "east-1", Kube: fake.NewClientset(), Sink: newRecordingSink(newFakeView(nil, nil)), View: agentView{v}})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(n int) (*model.ServiceEndpoints, []byte) {
		r := &model.ServiceEndpoints{Namespace: "shop", Name: "cart", Ports: []model.ServicePort{{Port: 80}}}
		for i := range n {
			r.Endpoints = append(r.Endpoints, model.Endpoint{Address: fmt.Sprintf("10.0.0.%d", i+1), Zone: "z",
				Ports: []model.EndpointPort{{Port: 80}}})
		}
		value, err := model.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		return r, value
	}
	if err := p.withinLimits(rec(2)); err != nil {
		t.Errorf("2 endpoints: %v", err)
	}
	if err := p.withinLimits(rec(3)); err == nil || !strings.Contains(err.Error(), "3 endpoints, over the cluster's limit of 2") {
		t.Errorf("3 endpoints: %v, want the endpoint limit", err)
	}
	r, value := rec(2)
	value = append(value, make([]byte, 600)...)
	if err := p.withinLimits(r, value); err == nil || !strings.Contains(err.Error(), "over the cluster's limit of 600") {
		t.Errorf("a large value: %v, want the size limit", err)
	}
}
