package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Attacks on what a member publishes (issue 10, items 1 and 4): with beta's stolen
// etcd credentials, records under beta's own services/ prefix. Readers check each
// against beta's hub-written ClusterInfo: clients in alpha and gamma keep landing
// where they did, and the agents report beta with the reason.

func init() {
	claim := func(name string, eps func(w *attackWorld) []model.Endpoint, reason string) {
		addAttack("publish: "+name, func(t *testing.T, w *attackWorld) {
			w.publishAttack(t, reason, func(put func(key string, value []byte)) {
				rec := &model.ServiceEndpoints{Namespace: "shop", Name: "cart",
					Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}, Endpoints: eps(w)}
				put(keyspace.ServiceEndpoints("beta", "shop", "cart"), mustJSON(t, rec))
			})
		})
	}
	ep := func(addr, zone string) model.Endpoint {
		return model.Endpoint{Address: addr, Zone: zone, Ready: true, Serving: true, Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}}
	}
	claim("200 copies of one address in alpha's zone", func(w *attackWorld) []model.Endpoint {
		var out []model.Endpoint
		for range 200 {
			out = append(out, ep("10.250.200.200", w.s.Cluster("alpha").Zones[0]))
		}
		return out
	}, "ZoneNotDeclared")
	claim("undeclared zone", func(*attackWorld) []model.Endpoint {
		return []model.Endpoint{ep("10.250.200.201", "evil-zone-9")}
	}, "ZoneNotDeclared")
	claim("loopback and link-local addresses", func(w *attackWorld) []model.Endpoint {
		z := w.s.Cluster("beta").Zones[0]
		return []model.Endpoint{ep("127.0.0.1", z), ep("169.254.169.254", z)}
	}, "AddressReserved")
	claim("address out of range", func(w *attackWorld) []model.Endpoint {
		return []model.Endpoint{ep("192.0.2.10", w.s.Cluster("beta").Zones[0])}
	}, "AddressOutOfRange")

	addAttack("publish: oversize record", func(t *testing.T, w *attackWorld) {
		w.publishAttack(t, "RecordTooLarge", func(put func(key string, value []byte)) {
			rec := &model.ServiceEndpoints{Namespace: "shop", Name: "big", Ports: []model.ServicePort{{Name: "grpc", Port: 8080}},
				Labels: map[string]string{"pad": strings.Repeat("x", 1_200_000)}} // 1.2 MB
			put(keyspace.ServiceEndpoints("beta", "shop", "big"), mustJSON(t, rec))
		})
	})
	addAttack("publish: 10,000 keys", func(t *testing.T, w *attackWorld) {
		w.publishAttack(t, "TooManyServices", func(put func(key string, value []byte)) {
			for i := range 10_000 {
				name := fmt.Sprintf("s-%05d", i)
				put(keyspace.ServiceEndpoints("beta", "spam", name), mustJSON(t, &model.ServiceEndpoints{Namespace: "spam", Name: name,
					Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}}))
			}
		})
	})
	addAttack("publish: unauthorized service", func(t *testing.T, w *attackWorld) {
		// A global service only alpha and gamma may provide; beta publishes its
		// member Service (it does anyway: shop/cart).
		g := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-ag"},
			Spec: v1.GlobalServiceSpec{Service: &v1.ServiceReference{Name: "cart"}, Clusters: []v1.ClusterName{"alpha", "gamma"},
				Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}}}}
		if err := w.hub.Create(w.ctx, g); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.hub.Delete(w.ctx, g) }) //nolint:errcheck
		host := model.ClusterSetHostname("shop", "cart-ag") + ":8080"
		for _, c := range []string{"alpha", "gamma"} {
			conn := w.client(t, c, host)
			testutil.Eventually(t, time.Minute, c+"'s client to reach cart-ag", func() error {
				landed, failed := send(w.ctx, conn, 20)
				for at := range landed {
					if strings.HasPrefix(at, "beta/") {
						t.Fatalf("a call from %s landed on %s: beta may not provide shop/cart-ag", c, at)
					}
				}
				if failed > 0 {
					return fmt.Errorf("%d calls failed, landed %v", failed, landed)
				}
				return nil
			})
		}
		w.waitRejection(t, "alpha", "ServiceNotAuthorized")
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// publishAttack records where clients in alpha and gamma land, writes with beta's
// stolen credentials what attack puts, waits until alpha's and gamma's agents report
// beta for reason, checks that the clients still land exactly where they did, and
// puts back what the attack changed under beta's prefix.
func (w *attackWorld) publishAttack(t *testing.T, reason string, attack func(put func(key string, value []byte))) {
	t.Helper()
	if reason == "AddressOutOfRange" && len(w.betaInfo(t).AddressRanges) == 0 {
		t.Skip("beta has no address ranges: the sandbox registers none yet")
	}
	conns := map[string]func() map[string]int{}
	for _, c := range []string{"alpha", "gamma"} {
		conn := w.client(t, c, "cart.shop.svc.clusterset.local:8080")
		conns[c] = func() map[string]int {
			landed, failed := send(w.ctx, conn, 20)
			if failed > 0 {
				landed["failed"] = failed
			}
			return landed
		}
	}
	before := map[string]map[string]int{}
	for c, count := range conns {
		testutil.Eventually(t, time.Minute, c+"'s client to be served", func() error {
			before[c] = count()
			if before[c]["failed"] > 0 {
				return fmt.Errorf("landed %v", before[c])
			}
			return nil
		})
	}

	etcd := w.stolenEtcd(t, "beta")
	prefix := keyspace.ClusterServices("beta")
	saved, err := etcd.Get(w.ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Put back beta's prefix as it was, so that later attacks start clean.
		if _, err := etcd.Delete(w.ctx, prefix, clientv3.WithPrefix()); err != nil {
			t.Errorf("clean up: %v", err)
		}
		for _, kv := range saved.Kvs {
			if _, err := etcd.Put(w.ctx, string(kv.Key), string(kv.Value)); err != nil {
				t.Errorf("clean up: %v", err)
			}
		}
	})
	var ops []clientv3.Op
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if _, err := etcd.Txn(w.ctx).Then(ops...).Commit(); err != nil {
			t.Fatalf("put with beta's credentials: %v", err)
		}
		ops = nil
	}
	write := func() {
		attack(func(key string, value []byte) {
			ops = append(ops, clientv3.OpPut(key, string(value)))
			if len(ops) == 100 || len(value) > 100_000 {
				flush()
			}
		})
		flush()
	}
	write()
	// beta's agent restores what it published when it finds its latest write gone
	// (the previous attack's clean-up, or this attack, tampered with its keys): a
	// restore landing just after the attack's write overwrites it before the readers
	// report it. Write again until they do; the restore happens once.
	testutil.Eventually(t, time.Minute, "alpha and gamma to report beta for "+reason, func() error {
		for _, c := range []string{"alpha", "gamma"} {
			if err := w.rejection(t, c, reason); err != nil {
				write()
				return err
			}
		}
		return nil
	})
	for c, count := range conns {
		if after := count(); !maps.Equal(after, before[c]) {
			t.Errorf("calls from %s landed %v after the attack, %v before", c, after, before[c])
		}
	}
}

// debugView reads an agent's /debug/view.
func (w *attackWorld) debugView(t *testing.T, cluster string) clusteragent.DebugView {
	t.Helper()
	resp, err := http.Get("http://" + w.s.Cluster(cluster).DebugAddr + "/debug/view")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out clusteragent.DebugView
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (w *attackWorld) betaInfo(t *testing.T) model.ClusterInfo {
	for _, c := range w.debugView(t, "alpha").Clusters {
		if c.Name == "beta" && c.Info != nil {
			return *c.Info
		}
	}
	t.Fatal("alpha's agent does not know beta")
	return model.ClusterInfo{}
}

// waitRejection waits until cluster's agent reports beta's records refused for reason.
func (w *attackWorld) waitRejection(t *testing.T, cluster, reason string) {
	t.Helper()
	testutil.Eventually(t, time.Minute, cluster+"'s agent to report beta for "+reason, func() error {
		return w.rejection(t, cluster, reason)
	})
}

// rejection says whether cluster's agent reports beta's records refused for reason
// now.
func (w *attackWorld) rejection(t *testing.T, cluster, reason string) error {
	t.Helper()
	rs := w.debugView(t, cluster).Rejections
	for _, r := range rs {
		if r.Cluster == "beta" && r.Reason == reason && r.Count > 0 {
			t.Logf("%s reports %s %s %d, e.g. %s: %s", cluster, r.Cluster, r.Reason, r.Count, r.Key, r.Detail)
			return nil
		}
	}
	return fmt.Errorf("%s reports %+v", cluster, rs)
}
