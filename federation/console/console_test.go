package console

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

type fakeView struct {
	clusters []view.Cluster
	globals  []model.GlobalService
}

func (f fakeView) Clusters() []view.Cluster              { return f.clusters }
func (f fakeView) GlobalServices() []model.GlobalService { return f.globals }
func (f fakeView) HasSynced() bool                       { return true }

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func world() fakeView {
	ep := func(zone string, ready bool) model.Endpoint {
		return model.Endpoint{Address: "10.0.0.1", Zone: zone, Ready: ready}
	}
	cart := view.NamespacedName{Namespace: "shop", Name: "cart"}
	other := view.NamespacedName{Namespace: "shop", Name: "other"}
	return fakeView{
		clusters: []view.Cluster{
			{Name: "gamma", Info: &model.ClusterInfo{Region: "eu-west", Zones: []string{"eu-1a"}, Network: "net-g",
				Gateways: []model.Gateway{{Address: "192.0.2.1", Port: 15443}}},
				Services: map[view.NamespacedName]*model.ServiceEndpoints{cart: {Namespace: "shop", Name: "cart",
					Endpoints: []model.Endpoint{ep("eu-1a", false)}}}},
			{Name: "alpha", Info: &model.ClusterInfo{Region: "us-east", Zones: []string{"us-1a", "us-1b"}, Network: "default"},
				Heartbeat: &model.Heartbeat{TTL: 10, Agent: "alpha-agent"}, LastHeartbeat: now.Add(-2 * time.Second),
				Services: map[view.NamespacedName]*model.ServiceEndpoints{
					cart:  {Namespace: "shop", Name: "cart", Endpoints: []model.Endpoint{ep("us-1a", true), ep("us-1a", false), ep("us-1b", true)}},
					other: {Namespace: "shop", Name: "other", Endpoints: []model.Endpoint{ep("us-1b", true)}},
				}},
		},
		globals: []model.GlobalService{{Namespace: "shop", Name: "cart", Hostname: "cart.shop.svc.clusterset.local",
			Service: &model.ServiceRef{Namespace: "shop", Name: "cart"}, Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}}},
	}
}

// The snapshot groups clusters by region and network, counts a global service's
// member endpoints (model.Selects: shop/other is not shop/cart's) per cluster and
// zone, and says which clusters are connected.
func TestSnapshot(t *testing.T) {
	w := world()
	f := Snapshot(w.clusters, w.globals, func(c string) bool { return c == "alpha" }, true, now)
	if len(f.Clusters) != 2 || f.Clusters[0].Name != "alpha" || f.Clusters[1].Name != "gamma" {
		t.Fatalf("clusters %+v: want alpha, gamma", f.Clusters)
	}
	a, g := f.Clusters[0], f.Clusters[1]
	if !a.Connected || a.HeartbeatAgeSeconds != 2 || a.HeartbeatTTLSeconds != 10 || !a.Explain || a.Ready != 3 || a.Endpoints != 4 {
		t.Errorf("alpha %+v", a)
	}
	if g.Connected || g.HeartbeatAgeSeconds != -1 || g.Explain || len(g.Gateways) != 1 || g.Gateways[0] != "192.0.2.1:15443" {
		t.Errorf("gamma %+v", g)
	}
	if len(f.Regions) != 2 || f.Regions[0].Name != "eu-west" || f.Regions[1].Clusters[0] != "alpha" {
		t.Errorf("regions %+v", f.Regions)
	}
	if len(f.Networks) != 2 || f.Networks[1].Name != "net-g" || f.Networks[1].Gateways[0] != "gamma 192.0.2.1:15443" {
		t.Errorf("networks %+v", f.Networks)
	}
	s := f.Services[0]
	if s.Ready != 2 || s.Endpoints != 4 || len(s.Clusters) != 2 || s.Ports[0] != "grpc 8080/GRPC" {
		t.Fatalf("shop/cart %+v", s)
	}
	if z := s.Clusters[0].Zones; s.Clusters[0].Cluster != "alpha" || len(z) != 2 || z[0] != (Zone{Name: "us-1a", Endpoints: 2, Ready: 1}) || z[1] != (Zone{Name: "us-1b", Endpoints: 1, Ready: 1}) {
		t.Errorf("shop/cart in alpha %+v", s.Clusters[0])
	}
	if s.Clusters[1].Cluster != "gamma" || s.Clusters[1].Ready != 0 || s.Clusters[1].Connected {
		t.Errorf("shop/cart in gamma %+v", s.Clusters[1])
	}
}

// The console only reads, loads nothing from elsewhere, and explains with the agent's
// own text.
func TestServer(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/explain" || r.URL.Query().Get("service") != "shop/cart" || r.URL.Query().Get("zone") != "us-1a" {
			http.Error(w, "unexpected "+r.URL.String(), http.StatusBadRequest)
			return
		}
		w.Write([]byte("the agent's table\n")) //nolint:errcheck
	}))
	defer agent.Close()
	s, err := New(Options{View: world(), Agents: map[string]string{"alpha": agent.URL + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, target string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
		return rec
	}
	if rec := do(http.MethodPost, "/api/federation"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", rec.Code)
	}
	page := do(http.MethodGet, "/")
	if page.Code != http.StatusOK || !strings.Contains(page.Header().Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("page: %d, CSP %q", page.Code, page.Header().Get("Content-Security-Policy"))
	}
	for _, external := range []string{"http://", "https://", "//cdn", "<link", "src="} {
		if strings.Contains(page.Body.String(), external) {
			t.Errorf("the page refers to something outside it: %q", external)
		}
	}
	var e Explanation
	rec := do(http.MethodGet, "/api/explain?cluster=alpha&zone=us-1a&service=shop/cart")
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusOK || e.Text != "the agent's table\n" {
		t.Errorf("explain alpha: %d %+v %v", rec.Code, e, err)
	}
	rec = do(http.MethodGet, "/api/explain?cluster=gamma&zone=eu-1a&service=shop/cart")
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusNotFound || !strings.Contains(e.Error, "--console-agents gamma=") {
		t.Errorf("explain gamma: %d %+v %v", rec.Code, e, err)
	}
	if _, err := New(Options{View: world(), Agents: map[string]string{"alpha": "10.0.0.1:9094"}}); err == nil {
		t.Error("an agent without a URL scheme was accepted")
	}
}
