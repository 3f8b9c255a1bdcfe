package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/federation/internal/etcdsec"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

func TestMain(m *testing.M) {
	// Managers get their own logger; this only keeps controller-runtime from warning
	// that its global logger was never set.
	ctrl.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// waitFor bounds every wait on the reconcilers: generous, since a loaded 2-core
// machine running an API server and etcd can stall a watch for seconds.
const waitFor = 45 * time.Second

const ns = "shop"

// hubEnv is the real parts the reconcilers run against: a kube-apiserver with
// meshfed's CRDs and an embedded etcd, without auth (the reconcilers' etcd calls,
// user and role management included, work the same without it).
type hubEnv struct {
	t      *testing.T // the top-level test: managers and cleanups live as long as it
	ctx    context.Context
	cfg    *rest.Config
	scheme *runtime.Scheme
	kube   client.Client // uncached, like a user's kubectl
	etcd   *clientv3.Client
}

func newHubEnv(t *testing.T) *hubEnv {
	t.Helper()
	cp := localkube.ForTest(t, "hub")[0]
	// The control plane may take minutes to start on a loaded machine: the test's
	// own deadline starts after it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitFor)
	t.Cleanup(cancel)
	srv, err := embedetcd.Start(ctx, embedetcd.Options{DataDir: t.TempDir(), UnsafeNoFsync: true, ZapLogger: zap.NewNop()})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(srv.Close)
	etcd, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	kube, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	e := &hubEnv{t: t, ctx: ctx, cfg: cp.Config, scheme: scheme, kube: kube, etcd: etcd}
	e.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	return e
}

// startManager runs the hub's controllers as federation.Run wires them: a manager
// with controllers.Setup, and a View fed by a Reader of the clusters prefix. Every
// start has its own View and Reader, as a restarted hub process would. The returned
// function stops the manager and waits for it; it also runs when the test ends.
func (e *hubEnv) startManager() (stop func()) {
	t := e.t
	t.Helper()
	log := testr.NewWithOptions(t, testr.Options{Verbosity: 0})
	v := view.New(view.Options{})
	reader, err := kvstore.NewReader(kvstore.ReaderOptions[model.Record]{
		Client: e.etcd, Prefix: keyspace.ClustersPrefix(), Decode: model.Decode, Observer: v, Logger: log.WithName("reader"),
	})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(e.cfg, ctrl.Options{
		Scheme:                 e.scheme,
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// A restarted manager in the same process registers the same controller names.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Add(manager.RunnableFunc(reader.Run)); err != nil {
		t.Fatal(err)
	}
	if err := Setup(mgr, Options{KV: e.etcd, Auth: e.etcd, View: v}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("manager: %v", err)
				}
			case <-time.After(waitFor):
				t.Errorf("manager still running %s after stop", waitFor)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// all reports the first of problems that is not "".
func all(problems ...string) (bool, string) {
	for _, p := range problems {
		if p != "" {
			return false, p
		}
	}
	return true, ""
}

// cond returns "" if conds hold typ with the given status and reason, stamped with gen.
func cond(conds []metav1.Condition, typ string, status metav1.ConditionStatus, reason string, gen int64) string {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return fmt.Sprintf("no %s condition in %+v", typ, conds)
	}
	if c.Status != status || c.Reason != reason || c.ObservedGeneration != gen {
		return fmt.Sprintf("%s is %s/%s at generation %d (%q), want %s/%s at generation %d",
			typ, c.Status, c.Reason, c.ObservedGeneration, c.Message, status, reason, gen)
	}
	return ""
}

func finalized(o client.Object) string {
	if !controllerutil.ContainsFinalizer(o, Finalizer) {
		return fmt.Sprintf("no finalizer %s in %v", Finalizer, o.GetFinalizers())
	}
	return ""
}

// waitEvent waits for an Event of the hub's (EventSource) with type typ and reason on o.
func (e *hubEnv) waitEvent(t *testing.T, o client.Object, typ, reason string) {
	t.Helper()
	// Events of cluster-scoped objects go to the default namespace.
	namespace := o.GetNamespace()
	if namespace == "" {
		namespace = metav1.NamespaceDefault
	}
	testutil.Eventually(t, waitFor, fmt.Sprintf("%s Event %s on %s", typ, reason, o.GetName()), func() error {
		list := &eventsv1.EventList{}
		if err := e.kube.List(e.ctx, list, client.InNamespace(namespace)); err != nil {
			return err
		}
		var seen []string
		for _, ev := range list.Items {
			if ev.Regarding.Name != o.GetName() || ev.ReportingController != EventSource {
				continue
			}
			if ev.Type == typ && ev.Reason == reason && ev.Action == eventAction && ev.Note != "" {
				return nil
			}
			seen = append(seen, ev.Type+"/"+ev.Reason)
		}
		return fmt.Errorf("events on %s: %v", o.GetName(), seen)
	})
}

func (e *hubEnv) create(t *testing.T, o client.Object) {
	t.Helper()
	if err := e.kube.Create(e.ctx, o); err != nil {
		t.Fatalf("create %T %s: %v", o, o.GetName(), err)
	}
}

// update applies change to the latest version of o, retrying on conflicts with the
// reconcilers' own writes; o holds the result.
func update[O client.Object](t *testing.T, e *hubEnv, o O, change func(O)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.kube.Get(e.ctx, client.ObjectKeyFromObject(o), o); err != nil {
			return err
		}
		change(o)
		return e.kube.Update(e.ctx, o)
	})
	if err != nil {
		t.Fatalf("update %T %s: %v", o, o.GetName(), err)
	}
}

// waitObject re-reads o until cond holds.
func waitObject[O client.Object](t *testing.T, e *hubEnv, o O, what string, cond func(O) (bool, string)) {
	t.Helper()
	key := client.ObjectKeyFromObject(o)
	testutil.Eventually(t, waitFor, what, testutil.Check(func() (bool, string) {
		if err := e.kube.Get(e.ctx, key, o); err != nil {
			return false, err.Error()
		}
		return cond(o)
	}))
}

// deleteAndWait deletes o and waits until it is gone, finalizer handled.
func (e *hubEnv) deleteAndWait(t *testing.T, o client.Object) {
	t.Helper()
	if err := e.kube.Delete(e.ctx, o); err != nil {
		t.Fatalf("delete %T %s: %v", o, o.GetName(), err)
	}
	testutil.Eventually(t, waitFor, fmt.Sprintf("%T %s to go", o, o.GetName()), testutil.Check(func() (bool, string) {
		err := e.kube.Get(e.ctx, client.ObjectKeyFromObject(o), o)
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		return false, fmt.Sprintf("still there (finalizers %v, err %v)", o.GetFinalizers(), err)
	}))
}

func (e *hubEnv) put(t *testing.T, key string, rec model.Record, opts ...clientv3.OpOption) {
	t.Helper()
	val, err := model.Encode(rec)
	if err != nil {
		t.Fatalf("encode %s: %v", key, err)
	}
	if _, err := e.etcd.Put(e.ctx, key, string(val), opts...); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// dump returns every key and value under prefix.
func (e *hubEnv) dump(t *testing.T, prefix string) map[string]string {
	t.Helper()
	resp, err := e.etcd.Get(e.ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get %s: %v", prefix, err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// waitRecord waits until etcd holds at key exactly want, as model.Decode reads it.
func (e *hubEnv) waitRecord(t *testing.T, key string, want model.Record) {
	t.Helper()
	testutil.Eventually(t, waitFor, "record at "+key, testutil.Check(func() (bool, string) {
		resp, err := e.etcd.Get(e.ctx, key)
		if err != nil {
			return false, err.Error()
		}
		if len(resp.Kvs) == 0 {
			return false, "no such key"
		}
		got, err := model.Decode(key, resp.Kvs[0].Value)
		if err != nil {
			return false, fmt.Sprintf("stored value does not decode: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			return false, "(-want +got):\n" + diff
		}
		return true, ""
	}))
}

// waitGone waits until nothing is stored under prefix (a single key is its own prefix
// here: no key of the layout is a prefix of another).
func (e *hubEnv) waitGone(t *testing.T, prefix string) {
	t.Helper()
	testutil.Eventually(t, waitFor, prefix+" to be deleted", testutil.Check(func() (bool, string) {
		left := e.dump(t, prefix)
		return len(left) == 0, fmt.Sprintf("still stored: %v", slices.Sorted(maps.Keys(left)))
	}))
}

// etcdUser reports whether the cluster's etcd user exists and holds its role, and
// whether the role exists.
func (e *hubEnv) etcdUser(t *testing.T, cluster string) (userWithRole, role bool) {
	t.Helper()
	name := hubinfo.EtcdUser(cluster, "") // the user of a cluster without spec.registration is named like its role
	u, err := e.etcd.UserGet(e.ctx, name)
	switch {
	case errors.Is(err, rpctypes.ErrUserNotFound):
	case err != nil:
		t.Fatalf("get etcd user %s: %v", name, err)
	default:
		userWithRole = slices.Contains(u.Roles, name)
	}
	_, err = e.etcd.RoleGet(e.ctx, name)
	switch {
	case errors.Is(err, rpctypes.ErrRoleNotFound):
	case err != nil:
		t.Fatalf("get etcd role %s: %v", name, err)
	default:
		role = true
	}
	return userWithRole, role
}

func meshCluster(name, region string, zones ...v1.LocalityName) *v1.MeshCluster {
	return &v1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.MeshClusterSpec{Region: v1.LocalityName(region), Zones: zones}}
}

func endpoint(addr, zone string, ready bool) model.Endpoint {
	return model.Endpoint{Address: addr, Zone: zone, Ready: ready, Serving: ready, Ports: []model.EndpointPort{{Name: "http", Port: 8080}}}
}

func serviceEndpoints(namespace, name string, labels map[string]string, eps ...model.Endpoint) *model.ServiceEndpoints {
	return &model.ServiceEndpoints{Namespace: namespace, Name: name, Labels: labels,
		Ports: []model.ServicePort{{Name: "http", Port: 80}}, Endpoints: eps, ExportedBy: []string{"GlobalService"}}
}

// defaultPolicy is the record of a FailoverPolicy with every default.
func defaultPolicy(name string) *model.Policy {
	return &model.Policy{Namespace: ns, Name: name, LocalityPreference: "Zone", FallbackToAny: true, MinHealthyPercent: 70,
		FailbackHold: duration(30 * time.Second), DemoteAfter: duration(30 * time.Second), DropAfter: duration(10 * time.Minute)}
}

// checkLeaks fails the test if goroutines it started outlive it. Register it first:
// cleanups run last-registered first, so it runs after every manager, client and
// server has stopped. Idle HTTP/2 connections to the API server may linger.
func checkLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, ignore,
			goleak.IgnoreTopFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		)
	})
}

// TestReconcilers runs the hub's reconcilers and Collector against a real
// kube-apiserver and a real etcd, through create, update, agent activity, delete and
// a restart. The steps build on each other.
func TestReconcilers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	checkLeaks(t)
	e := newHubEnv(t)
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	// Objects and state from before the manager's first start.
	keepCluster := meshCluster("keep-10", "us-east", "us-east-1a")
	keepService := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keep"},
		Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Port: 80}}}}
	keepPolicy := &v1.FailoverPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keep"}}

	step("Collector deletes orphans and keeps live state", func(t *testing.T) {
		e.create(t, keepCluster)
		e.create(t, keepService)
		e.create(t, keepPolicy)
		// Keys of live objects, with stale values: the Collector looks at keys only.
		e.put(t, keyspace.ClusterInfo("keep-10"), &model.ClusterInfo{Name: "keep-10", Region: "stale", Network: "stale"})
		e.put(t, keyspace.ServiceEndpoints("keep-10", ns, "keep"), serviceEndpoints(ns, "keep", nil, endpoint("10.9.0.1", "us-east-1a", true)))
		e.put(t, keyspace.GlobalService(ns, "keep"), &model.GlobalService{Namespace: ns, Name: "keep", Hostname: "stale.example",
			Service: &model.ServiceRef{Namespace: ns, Name: "stale"}, Ports: []model.GlobalPort{{Port: 1, Protocol: "TCP"}}})
		stalePolicy := defaultPolicy("keep")
		stalePolicy.LocalityPreference = "None"
		e.put(t, keyspace.Policy(ns, "keep"), stalePolicy)
		live := e.dump(t, keyspace.Root)

		// Orphans: a global service and a policy without their objects, and a whole
		// cluster, with its etcd user and role, without a MeshCluster. Its name is a
		// prefix of the live cluster's: the live one's keys must survive.
		e.put(t, keyspace.GlobalService(ns, "gone"), &model.GlobalService{Namespace: ns, Name: "gone", Hostname: "gone.example",
			Service: &model.ServiceRef{Namespace: ns, Name: "gone"}, Ports: []model.GlobalPort{{Port: 80, Protocol: "TCP"}}})
		e.put(t, keyspace.Policy(ns, "gone"), defaultPolicy("gone"))
		if err := etcdsec.EnsureCluster(e.ctx, e.etcd, "keep-1", ""); err != nil {
			t.Fatal(err)
		}
		e.put(t, keyspace.ClusterInfo("keep-1"), &model.ClusterInfo{Name: "keep-1", Region: "us-east", Network: "default"})
		e.put(t, keyspace.ClusterHeartbeat("keep-1"), &model.Heartbeat{Time: time.Now(), TTL: 10, Agent: "a"})
		e.put(t, keyspace.ClusterSynced("keep-1"), &model.Synced{SyncedAt: time.Now()})
		e.put(t, keyspace.ServiceEndpoints("keep-1", ns, "cart"), serviceEndpoints(ns, "cart", nil))
		if u, r := e.etcdUser(t, "keep-1"); !u || !r {
			t.Fatalf("setup: etcd user/role of keep-1: %v/%v", u, r)
		}

		c := &Collector{Client: e.kube, KV: e.etcd, Auth: e.etcd}
		n, err := c.Collect(e.ctx)
		if err != nil {
			t.Fatalf("Collect: %v", err)
		}
		if n != 3 {
			t.Errorf("Collect deleted %d orphans, want 3 (a global service, a policy, a cluster)", n)
		}
		if diff := cmp.Diff(live, e.dump(t, keyspace.Root)); diff != "" {
			t.Errorf("after Collect, etcd differs from the live state (-want +got):\n%s", diff)
		}
		if u, r := e.etcdUser(t, "keep-1"); u || r {
			t.Errorf("the orphan cluster's etcd user/role survived: %v/%v", u, r)
		}

		// A second pass finds nothing.
		if n, err := c.Collect(e.ctx); err != nil || n != 0 {
			t.Errorf("second Collect = %d, %v; want 0, nil", n, err)
		}
		if diff := cmp.Diff(live, e.dump(t, keyspace.Root)); diff != "" {
			t.Errorf("second Collect changed etcd (-want +got):\n%s", diff)
		}
	})

	stop := e.startManager()

	step("first start converges existing objects", func(t *testing.T) {
		e.waitRecord(t, keyspace.ClusterInfo("keep-10"),
			&model.ClusterInfo{Name: "keep-10", Region: "us-east", Zones: []string{"us-east-1a"}, Network: "default", Limits: defaultLimits})
		e.waitRecord(t, keyspace.GlobalService(ns, "keep"), &model.GlobalService{Namespace: ns, Name: "keep",
			Hostname: "keep.shop.svc.clusterset.local", Service: &model.ServiceRef{Namespace: ns, Name: "keep"},
			Ports: []model.GlobalPort{{Port: 80, Protocol: "TCP"}}})
		e.waitRecord(t, keyspace.Policy(ns, "keep"), defaultPolicy("keep"))
		for _, o := range []client.Object{keepCluster, keepService, keepPolicy} {
			waitObject(t, e, o, "finalizer on "+o.GetName(), func(o client.Object) (bool, string) { return all(finalized(o)) })
		}
		// The live cluster's agent data is the agent's: the hub leaves it.
		if got := e.dump(t, keyspace.ClusterServices("keep-10")); len(got) != 1 {
			t.Errorf("keep-10's published services = %v, want the one published before the start", got)
		}
		testutil.Eventually(t, waitFor, "keep-10's etcd user", testutil.Check(func() (bool, string) {
			u, r := e.etcdUser(t, "keep-10")
			return u && r, fmt.Sprintf("user with role %v, role %v", u, r)
		}))
	})

	east := meshCluster("east-1", "us-east", "us-east-1a", "us-east-1b")
	east.Labels = map[string]string{"env": "prod"}
	east.Spec.Gateways = []v1.GatewayAddress{{Address: "203.0.113.10"}}
	eastCart := serviceEndpoints(ns, "cart", nil,
		endpoint("10.0.0.1", "us-east-1a", true), endpoint("10.0.0.2", "us-east-1b", true), endpoint("10.0.0.3", "us-east-1b", false))
	eastWeb := serviceEndpoints(ns, "web", map[string]string{"tier": "front"}, endpoint("10.0.1.1", "us-east-1a", true))
	// The frontends' global port is 443, unnamed: east-1's web serves it by number.
	eastWeb.Ports = append(eastWeb.Ports, model.ServicePort{Port: 443})
	eastWeb.Endpoints[0].Ports = append(eastWeb.Endpoints[0].Ports, model.EndpointPort{Port: 8443})

	step("MeshCluster", func(t *testing.T) {
		e.create(t, east)
		e.waitRecord(t, keyspace.ClusterInfo("east-1"), &model.ClusterInfo{
			Name: "east-1", Region: "us-east", Zones: []string{"us-east-1a", "us-east-1b"}, Network: "default",
			Gateways: []model.Gateway{{Address: "203.0.113.10", Port: 15443}}, Labels: map[string]string{"env": "prod"}, Limits: defaultLimits,
		})
		waitObject(t, e, east, "east-1 registered", func(mc *v1.MeshCluster) (bool, string) {
			gen, s := mc.Generation, mc.Status
			return all(finalized(mc),
				cond(s.Conditions, v1.ConditionRegistered, metav1.ConditionTrue, v1.ReasonRegistered, gen),
				cond(s.Conditions, v1.ConditionConnected, metav1.ConditionFalse, v1.ReasonNoHeartbeat, gen),
				cond(s.Conditions, v1.ConditionSynced, metav1.ConditionFalse, v1.ReasonNotSynced, gen),
				cond(s.Conditions, v1.ConditionPublishedDataValid, metav1.ConditionTrue, v1.ReasonPublishedDataValid, gen),
				ranges(s, v1.AddressRangesAnyRoutable),
				observed(s.ObservedGeneration, gen),
				counts(s, 0, 0))
		})
		if u, r := e.etcdUser(t, "east-1"); !u || !r {
			t.Errorf("registered cluster's etcd user with role %v, role %v; want both", u, r)
		}

		t.Run("update", func(t *testing.T) {
			update(t, e, east, func(mc *v1.MeshCluster) {
				mc.Spec.Zones = append(mc.Spec.Zones, "us-east-1c")
				mc.Spec.Network = "corp"
				mc.Labels["tier"] = "gold"
				mc.Spec.AddressRanges = []v1.CIDR{"10.0.0.0/16", "fd00:10::/56"}
				mc.Spec.Limits.MaxServices = 10
			})
			if east.Generation < 2 {
				t.Fatalf("generation %d after a spec change", east.Generation)
			}
			e.waitRecord(t, keyspace.ClusterInfo("east-1"), &model.ClusterInfo{
				Name: "east-1", Region: "us-east", Zones: []string{"us-east-1a", "us-east-1b", "us-east-1c"}, Network: "corp",
				Gateways: []model.Gateway{{Address: "203.0.113.10", Port: 15443}}, Labels: map[string]string{"env": "prod", "tier": "gold"},
				AddressRanges: []string{"10.0.0.0/16", "fd00:10::/56"}, Limits: model.PublishLimits{MaxServices: 10, MaxEndpointsPerService: 5000, MaxValueBytes: 1 << 20},
			})
			gen := east.Generation
			waitObject(t, e, east, "conditions of the new generation", func(mc *v1.MeshCluster) (bool, string) {
				s := mc.Status
				return all(observed(s.ObservedGeneration, gen),
					cond(s.Conditions, v1.ConditionRegistered, metav1.ConditionTrue, v1.ReasonRegistered, gen),
					cond(s.Conditions, v1.ConditionConnected, metav1.ConditionFalse, v1.ReasonNoHeartbeat, gen),
					cond(s.Conditions, v1.ConditionSynced, metav1.ConditionFalse, v1.ReasonNotSynced, gen),
					ranges(s, "10.0.0.0/16,fd00:10::/56"))
			})
		})

		lease, err := e.etcd.Grant(e.ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		beat := time.Now()
		t.Run("agent connects", func(t *testing.T) {
			e.put(t, keyspace.ClusterHeartbeat("east-1"), &model.Heartbeat{Time: beat, TTL: 60, Agent: "agent-east"}, clientv3.WithLease(lease.ID))
			waitObject(t, e, east, "Connected", func(mc *v1.MeshCluster) (bool, string) {
				s := mc.Status
				if p := cond(s.Conditions, v1.ConditionConnected, metav1.ConditionTrue, v1.ReasonHeartbeatLive, mc.Generation); p != "" {
					return false, p
				}
				if msg := meta.FindStatusCondition(s.Conditions, v1.ConditionConnected).Message; !strings.Contains(msg, "agent-east") {
					return false, fmt.Sprintf("Connected message %q does not name the agent", msg)
				}
				if s.LastHeartbeatTime == nil || s.LastHeartbeatTime.Sub(beat).Abs() > time.Minute {
					return false, fmt.Sprintf("lastHeartbeatTime %v, want about %v", s.LastHeartbeatTime, beat)
				}
				return true, ""
			})
			e.waitEvent(t, east, corev1.EventTypeNormal, v1.ReasonHeartbeatLive)
		})

		// An agent that predates versions reports none (above); status.agentVersion
		// follows each heartbeat that says one, as the agent is upgraded.
		agentVersion := "v0.4.0 (commit abc, go1.26.8, linux/arm64)"
		t.Run("agent reports its version", func(t *testing.T) {
			if got := (&v1.MeshCluster{}); e.kube.Get(e.ctx, client.ObjectKeyFromObject(east), got) != nil || got.Status.AgentVersion != "" {
				t.Errorf("agentVersion %q from a heartbeat without a version, want none", got.Status.AgentVersion)
			}
			for _, v := range []string{"v0.3.0 (commit 123, go1.26.8, linux/amd64)", agentVersion} {
				e.put(t, keyspace.ClusterHeartbeat("east-1"), &model.Heartbeat{Time: beat, TTL: 60, Agent: "agent-east", Version: v},
					clientv3.WithLease(lease.ID))
				waitObject(t, e, east, "agentVersion "+v, func(mc *v1.MeshCluster) (bool, string) {
					return mc.Status.AgentVersion == v, fmt.Sprintf("agentVersion %q, want %q", mc.Status.AgentVersion, v)
				})
			}
		})

		t.Run("agent synced", func(t *testing.T) {
			e.put(t, keyspace.ClusterSynced("east-1"), &model.Synced{SyncedAt: time.Now()})
			waitObject(t, e, east, "Synced", func(mc *v1.MeshCluster) (bool, string) {
				return all(cond(mc.Status.Conditions, v1.ConditionSynced, metav1.ConditionTrue, v1.ReasonSynced, mc.Generation))
			})
		})

		t.Run("agent publishes", func(t *testing.T) {
			e.put(t, keyspace.ServiceEndpoints("east-1", ns, "cart"), eastCart)
			e.put(t, keyspace.ServiceEndpoints("east-1", ns, "web"), eastWeb)
			waitObject(t, e, east, "exported counts", func(mc *v1.MeshCluster) (bool, string) { return all(counts(mc.Status, 2, 4)) })
		})

		t.Run("heartbeat lapses", func(t *testing.T) {
			if _, err := e.etcd.Revoke(e.ctx, lease.ID); err != nil {
				t.Fatal(err)
			}
			waitObject(t, e, east, "Connected=False", func(mc *v1.MeshCluster) (bool, string) {
				s := mc.Status
				return all(cond(s.Conditions, v1.ConditionConnected, metav1.ConditionFalse, v1.ReasonHeartbeatLapsed, mc.Generation),
					cond(s.Conditions, v1.ConditionSynced, metav1.ConditionTrue, v1.ReasonSynced, mc.Generation),
					cond(s.Conditions, v1.ConditionRegistered, metav1.ConditionTrue, v1.ReasonRegistered, mc.Generation),
					counts(s, 2, 4))
			})
			e.waitEvent(t, east, corev1.EventTypeWarning, v1.ReasonHeartbeatLapsed)
			if err := e.kube.Get(e.ctx, client.ObjectKeyFromObject(east), east); err != nil || east.Status.AgentVersion != agentVersion {
				t.Errorf("after the heartbeat lapsed, agentVersion %q (%v), want the last one reported, %q", east.Status.AgentVersion, err, agentVersion)
			}
		})
	})

	west := meshCluster("west-1", "us-west", "us-west-1a")
	loc := func(region, zone string, ready, total int32) v1.LocalityEndpoints {
		return v1.LocalityEndpoints{Region: region, Zone: zone, Ready: ready, Total: total}
	}
	cart := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cart"}, Spec: v1.GlobalServiceSpec{
		Ports:             []v1.GlobalServicePort{{Name: "http", Port: 80}},
		FailoverPolicyRef: &v1.LocalObjectReference{Name: "cart-failover"},
	}}
	cartRecord := &model.GlobalService{Namespace: ns, Name: "cart", Hostname: "cart.shop.svc.clusterset.local",
		Service: &model.ServiceRef{Namespace: ns, Name: "cart"}, Ports: []model.GlobalPort{{Name: "http", Port: 80, Protocol: "TCP"}},
		Policy: "cart-failover"}
	frontends := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "frontends"}, Spec: v1.GlobalServiceSpec{
		Hostname: "web.example.internal",
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "front"}},
		Clusters: []v1.ClusterName{"east-1"},
		Ports:    []v1.GlobalServicePort{{Port: 443, Protocol: v1.ProtocolTLS}},
	}}
	// gsStatus returns "" if the status reports these endpoints.
	gsStatus := func(gs *v1.GlobalService, hostname string, ready int32, clusters []v1.ClusterEndpoints) string {
		s := gs.Status
		if s.Hostname != hostname {
			return fmt.Sprintf("status hostname %q, want %q", s.Hostname, hostname)
		}
		if want := v1.ProvidersAll; len(gs.Spec.Clusters) > 0 {
			if want = string(gs.Spec.Clusters[0]); s.Providers != want {
				return fmt.Sprintf("status providers %q, want %q", s.Providers, want)
			}
		} else if s.Providers != want {
			return fmt.Sprintf("status providers %q, want %q", s.Providers, want)
		}
		if s.ReadyEndpoints != ready {
			return fmt.Sprintf("readyEndpoints %d, want %d", s.ReadyEndpoints, ready)
		}
		if diff := cmp.Diff(clusters, s.Clusters); diff != "" {
			return "status clusters (-want +got):\n" + diff
		}
		return ""
	}

	step("GlobalService", func(t *testing.T) {
		e.create(t, west)
		e.waitRecord(t, keyspace.ClusterInfo("west-1"),
			&model.ClusterInfo{Name: "west-1", Region: "us-west", Zones: []string{"us-west-1a"}, Network: "default", Limits: defaultLimits})
		e.put(t, keyspace.ServiceEndpoints("west-1", ns, "cart"), serviceEndpoints(ns, "cart", nil,
			endpoint("10.1.0.1", "us-west-1a", true), endpoint("10.1.0.2", "", false)))
		// Labelled like the frontends, but in a cluster they do not include.
		e.put(t, keyspace.ServiceEndpoints("west-1", ns, "web"), serviceEndpoints(ns, "web", map[string]string{"tier": "front"},
			endpoint("10.1.1.1", "us-west-1a", true)))
		// Named like cart, but in another namespace.
		e.put(t, keyspace.ServiceEndpoints("west-1", "store", "cart"), serviceEndpoints("store", "cart", nil,
			endpoint("10.1.2.1", "us-west-1a", true)))

		e.create(t, cart)
		e.waitRecord(t, keyspace.GlobalService(ns, "cart"), cartRecord)
		cartClusters := []v1.ClusterEndpoints{
			{Cluster: "east-1", Localities: []v1.LocalityEndpoints{loc("us-east", "us-east-1a", 1, 1), loc("us-east", "us-east-1b", 1, 2)}},
			{Cluster: "west-1", Localities: []v1.LocalityEndpoints{loc("us-west", "", 0, 1), loc("us-west", "us-west-1a", 1, 1)}},
		}
		waitObject(t, e, cart, "cart's status", func(gs *v1.GlobalService) (bool, string) {
			gen := gs.Generation
			return all(finalized(gs),
				observed(gs.Status.ObservedGeneration, gen),
				cond(gs.Status.Conditions, v1.ConditionAccepted, metav1.ConditionTrue, v1.ReasonAccepted, gen),
				cond(gs.Status.Conditions, v1.ConditionResolvedRefs, metav1.ConditionFalse, v1.ReasonPolicyNotFound, gen),
				cond(gs.Status.Conditions, v1.ConditionHostnameConflict, metav1.ConditionFalse, v1.ReasonHostnameUnique, gen),
				gsStatus(gs, "cart.shop.svc.clusterset.local", 3, cartClusters))
		})
		e.waitEvent(t, cart, corev1.EventTypeWarning, v1.ReasonPolicyNotFound)

		e.create(t, frontends)
		e.waitRecord(t, keyspace.GlobalService(ns, "frontends"), &model.GlobalService{Namespace: ns, Name: "frontends",
			Hostname: "web.example.internal", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "front"}},
			Ports: []model.GlobalPort{{Port: 443, Protocol: "TLS"}}, Clusters: []string{"east-1"}})
		waitObject(t, e, frontends, "frontends' status", func(gs *v1.GlobalService) (bool, string) {
			gen := gs.Generation
			return all(finalized(gs),
				cond(gs.Status.Conditions, v1.ConditionAccepted, metav1.ConditionTrue, v1.ReasonAccepted, gen),
				cond(gs.Status.Conditions, v1.ConditionResolvedRefs, metav1.ConditionTrue, v1.ReasonResolvedRefs, gen),
				gsStatus(gs, "web.example.internal", 1,
					[]v1.ClusterEndpoints{{Cluster: "east-1", Localities: []v1.LocalityEndpoints{loc("us-east", "us-east-1a", 1, 1)}}}))
		})

		t.Run("update", func(t *testing.T) {
			update(t, e, cart, func(gs *v1.GlobalService) {
				gs.Spec.Ports = append(gs.Spec.Ports, v1.GlobalServicePort{Name: "grpc", Port: 9090, Protocol: v1.ProtocolGRPC})
			})
			cartRecord.Ports = append(cartRecord.Ports, model.GlobalPort{Name: "grpc", Port: 9090, Protocol: "GRPC"})
			e.waitRecord(t, keyspace.GlobalService(ns, "cart"), cartRecord)
			gen := cart.Generation
			waitObject(t, e, cart, "conditions of the new generation", func(gs *v1.GlobalService) (bool, string) {
				return all(observed(gs.Status.ObservedGeneration, gen),
					cond(gs.Status.Conditions, v1.ConditionAccepted, metav1.ConditionTrue, v1.ReasonAccepted, gen),
					cond(gs.Status.Conditions, v1.ConditionResolvedRefs, metav1.ConditionFalse, v1.ReasonPolicyNotFound, gen))
			})
		})

		t.Run("published endpoints change", func(t *testing.T) {
			e.put(t, keyspace.ServiceEndpoints("west-1", ns, "cart"), serviceEndpoints(ns, "cart", nil,
				endpoint("10.1.0.1", "us-west-1a", true), endpoint("10.1.0.2", "", false), endpoint("10.1.0.3", "us-west-1a", true)))
			cartClusters[1].Localities[1] = loc("us-west", "us-west-1a", 2, 2)
			waitObject(t, e, cart, "cart's new endpoint counts", func(gs *v1.GlobalService) (bool, string) {
				return all(gsStatus(gs, "cart.shop.svc.clusterset.local", 4, cartClusters))
			})
		})
	})

	south := meshCluster("south-1", "sa-east", "sa-east-1a")
	failover := &v1.FailoverPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cart-failover"}, Spec: v1.FailoverPolicySpec{
		LocalityPreference: v1.PreferRegion,
		Failover: []v1.FailoverRule{{From: v1.LocalitySelector{Region: "us-east"},
			To: []v1.LocalitySelector{{Cluster: "west-1"}, {Cluster: "south-1"}}}},
	}}
	failoverRecord := defaultPolicy("cart-failover")
	failoverRecord.LocalityPreference = "Region"
	failoverRecord.Failover = []model.FailoverRule{{From: model.Locality{Region: "us-east"},
		To: []model.Locality{{Cluster: "west-1"}, {Cluster: "south-1"}}}}

	step("FailoverPolicy", func(t *testing.T) {
		e.create(t, failover)
		// The API server's defaults come through, as well as the spec.
		e.waitRecord(t, keyspace.Policy(ns, "cart-failover"), failoverRecord)
		waitObject(t, e, failover, "UnknownCluster", func(fp *v1.FailoverPolicy) (bool, string) {
			gen := fp.Generation
			if p := cond(fp.Status.Conditions, v1.ConditionResolvedRefs, metav1.ConditionFalse, v1.ReasonUnknownCluster, gen); p != "" {
				return false, p
			}
			msg := meta.FindStatusCondition(fp.Status.Conditions, v1.ConditionResolvedRefs).Message
			if !strings.Contains(msg, "south-1") || strings.Contains(msg, "west-1") {
				return false, fmt.Sprintf("ResolvedRefs message %q should name south-1 and only it", msg)
			}
			return all(finalized(fp), observed(fp.Status.ObservedGeneration, gen),
				cond(fp.Status.Conditions, v1.ConditionAccepted, metav1.ConditionTrue, v1.ReasonAccepted, gen))
		})
		e.waitEvent(t, failover, corev1.EventTypeWarning, v1.ReasonUnknownCluster)

		// The GlobalService naming the policy now resolves it.
		waitObject(t, e, cart, "cart's policy reference resolved", func(gs *v1.GlobalService) (bool, string) {
			return all(cond(gs.Status.Conditions, v1.ConditionResolvedRefs, metav1.ConditionTrue, v1.ReasonResolvedRefs, gs.Generation))
		})

		e.create(t, south)
		waitObject(t, e, failover, "references resolved after south-1 registered", func(fp *v1.FailoverPolicy) (bool, string) {
			return all(cond(fp.Status.Conditions, v1.ConditionResolvedRefs, metav1.ConditionTrue, v1.ReasonResolvedRefs, fp.Generation))
		})
		e.waitEvent(t, failover, corev1.EventTypeNormal, v1.ReasonResolvedRefs)

		t.Run("update", func(t *testing.T) {
			update(t, e, failover, func(fp *v1.FailoverPolicy) {
				fp.Spec.MinHealthyPercent = ptr.To[int32](50)
				fp.Spec.StaleCluster.DemoteAfter = &metav1.Duration{Duration: time.Minute}
			})
			failoverRecord.MinHealthyPercent, failoverRecord.DemoteAfter = 50, duration(time.Minute)
			e.waitRecord(t, keyspace.Policy(ns, "cart-failover"), failoverRecord)
			gen := failover.Generation
			waitObject(t, e, failover, "conditions of the new generation", func(fp *v1.FailoverPolicy) (bool, string) {
				return all(observed(fp.Status.ObservedGeneration, gen),
					cond(fp.Status.Conditions, v1.ConditionAccepted, metav1.ConditionTrue, v1.ReasonAccepted, gen),
					cond(fp.Status.Conditions, v1.ConditionResolvedRefs, metav1.ConditionTrue, v1.ReasonResolvedRefs, gen))
			})
		})
	})

	// Status shows what is served: a cluster that renamed the port serves nothing of
	// it, and a rule that matches no registered locality is reported.
	step("status tells the truth", func(t *testing.T) {
		t.Run("a port renamed in one cluster", func(t *testing.T) {
			cartClusters := []v1.ClusterEndpoints{
				{Cluster: "east-1", Localities: []v1.LocalityEndpoints{loc("us-east", "us-east-1a", 1, 1), loc("us-east", "us-east-1b", 1, 2)}},
				{Cluster: "west-1", Localities: []v1.LocalityEndpoints{loc("us-west", "", 0, 1), loc("us-west", "us-west-1a", 2, 2)}},
			}
			served := serviceEndpoints(ns, "cart", nil,
				endpoint("10.1.0.1", "us-west-1a", true), endpoint("10.1.0.2", "", false), endpoint("10.1.0.3", "us-west-1a", true))
			renamed := serviceEndpoints(ns, "cart", nil,
				endpoint("10.1.0.1", "us-west-1a", true), endpoint("10.1.0.2", "", false), endpoint("10.1.0.3", "us-west-1a", true))
			renamed.Ports[0].Name = "web"
			for i := range renamed.Endpoints {
				renamed.Endpoints[i].Ports[0].Name = "web"
			}
			e.put(t, keyspace.ServiceEndpoints("west-1", ns, "cart"), renamed)
			waitObject(t, e, cart, "west-1 excluded from cart", func(gs *v1.GlobalService) (bool, string) {
				i := slices.IndexFunc(gs.Status.Excluded, func(x v1.ExcludedCluster) bool { return x.Cluster == "west-1" && x.Port == 80 })
				if i < 0 || gs.Status.Excluded[i].Reason != v1.ReasonPortNotFound {
					return false, fmt.Sprintf("excluded %+v, want west-1 port 80 PortNotFound", gs.Status.Excluded)
				}
				return all(gsStatus(gs, "cart.shop.svc.clusterset.local", 2, cartClusters[:1]))
			})
			e.put(t, keyspace.ServiceEndpoints("west-1", ns, "cart"), served)
			waitObject(t, e, cart, "west-1 back in cart", func(gs *v1.GlobalService) (bool, string) {
				if slices.ContainsFunc(gs.Status.Excluded, func(x v1.ExcludedCluster) bool { return x.Cluster == "west-1" && x.Port == 80 }) {
					return false, fmt.Sprintf("excluded %+v still lists west-1 port 80", gs.Status.Excluded)
				}
				return all(gsStatus(gs, "cart.shop.svc.clusterset.local", 4, cartClusters))
			})
		})

		t.Run("a distribute rule matching nothing", func(t *testing.T) {
			spread := &v1.FailoverPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "spread"}, Spec: v1.FailoverPolicySpec{
				Distribute: []v1.DistributeRule{{From: "us-east", To: []v1.WeightedLocality{{Locality: "us-east", Weight: 50}, {Locality: "eu-west/*", Weight: 50}}}},
			}}
			e.create(t, spread)
			waitObject(t, e, spread, "UnmatchedLocality", func(fp *v1.FailoverPolicy) (bool, string) {
				if p := cond(fp.Status.Conditions, v1.ConditionResolvedRefs, metav1.ConditionFalse, v1.ReasonUnmatchedLocality, fp.Generation); p != "" {
					return false, p
				}
				if msg := meta.FindStatusCondition(fp.Status.Conditions, v1.ConditionResolvedRefs).Message; !strings.Contains(msg, `to "eu-west/*"`) {
					return false, fmt.Sprintf("ResolvedRefs message %q does not name the destination", msg)
				}
				return true, ""
			})
			e.waitEvent(t, spread, corev1.EventTypeWarning, v1.ReasonUnmatchedLocality)
			e.deleteAndWait(t, spread)
			e.waitGone(t, keyspace.Policy(ns, "spread"))
		})
	})

	// One hostname, one GlobalService: the oldest claimant owns it, the others are
	// told and not served, and the next takes over when the owner goes.
	step("hostname conflicts", func(t *testing.T) {
		shared := func(name string) *v1.GlobalService {
			return &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.GlobalServiceSpec{
				Hostname: "shared.example.internal", Ports: []v1.GlobalServicePort{{Port: 80}}}}
		}
		record := func(name string) *model.GlobalService {
			return &model.GlobalService{Namespace: ns, Name: name, Hostname: "shared.example.internal",
				Service: &model.ServiceRef{Namespace: ns, Name: name}, Ports: []model.GlobalPort{{Port: 80, Protocol: "TCP"}}}
		}
		conflicting := func(gs *v1.GlobalService, owner string) (bool, string) {
			gen := gs.Generation
			if p := cond(gs.Status.Conditions, v1.ConditionHostnameConflict, metav1.ConditionTrue, v1.ReasonHostnameInUse, gen); p != "" {
				return false, p
			}
			if msg := meta.FindStatusCondition(gs.Status.Conditions, v1.ConditionHostnameConflict).Message; !strings.Contains(msg, ns+"/"+owner) {
				return false, fmt.Sprintf("HostnameConflict message %q does not name the owner %s/%s", msg, ns, owner)
			}
			return all(cond(gs.Status.Conditions, v1.ConditionAccepted, metav1.ConditionFalse, v1.ReasonHostnameInUse, gen))
		}
		// Created first, named last: age decides, not the name.
		first := shared("shared-b")
		e.create(t, first)
		e.waitRecord(t, keyspace.GlobalService(ns, "shared-b"), record("shared-b"))
		testutil.Eventually(t, waitFor, "a second later than shared-b's creation", testutil.Check(func() (bool, string) {
			return time.Now().Truncate(time.Second).After(first.CreationTimestamp.Time), "same second"
		}))
		second := shared("shared-a")
		e.create(t, second)
		waitObject(t, e, second, "shared-a in conflict with shared-b", func(gs *v1.GlobalService) (bool, string) { return conflicting(gs, "shared-b") })
		e.waitEvent(t, second, corev1.EventTypeWarning, v1.ReasonHostnameInUse)
		if got := e.dump(t, keyspace.GlobalService(ns, "shared-a")); len(got) != 0 {
			t.Errorf("the conflicting GlobalService was written to etcd: %v", got)
		}
		e.waitRecord(t, keyspace.GlobalService(ns, "shared-b"), record("shared-b"))
		waitObject(t, e, first, "shared-b owns its hostname", func(gs *v1.GlobalService) (bool, string) {
			return all(cond(gs.Status.Conditions, v1.ConditionHostnameConflict, metav1.ConditionFalse, v1.ReasonHostnameUnique, gs.Generation),
				cond(gs.Status.Conditions, v1.ConditionAccepted, metav1.ConditionTrue, v1.ReasonAccepted, gs.Generation))
		})

		// A hostname spelled out that another service has by default.
		thief := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "thief"}, Spec: v1.GlobalServiceSpec{
			Hostname: "keep.shop.svc.clusterset.local", Ports: []v1.GlobalServicePort{{Port: 80}}}}
		e.create(t, thief)
		waitObject(t, e, thief, "thief in conflict with keep", func(gs *v1.GlobalService) (bool, string) { return conflicting(gs, "keep") })
		if got := e.dump(t, keyspace.GlobalService(ns, "thief")); len(got) != 0 {
			t.Errorf("the thief was written to etcd: %v", got)
		}
		e.deleteAndWait(t, thief)

		// The owner goes: the next claimant takes over.
		e.deleteAndWait(t, first)
		e.waitGone(t, keyspace.GlobalService(ns, "shared-b"))
		e.waitRecord(t, keyspace.GlobalService(ns, "shared-a"), record("shared-a"))
		waitObject(t, e, second, "shared-a took the hostname over", func(gs *v1.GlobalService) (bool, string) {
			return all(cond(gs.Status.Conditions, v1.ConditionHostnameConflict, metav1.ConditionFalse, v1.ReasonHostnameUnique, gs.Generation),
				cond(gs.Status.Conditions, v1.ConditionAccepted, metav1.ConditionTrue, v1.ReasonAccepted, gs.Generation))
		})
		e.waitEvent(t, second, corev1.EventTypeNormal, v1.ReasonHostnameUnique)
		e.deleteAndWait(t, second)
		e.waitGone(t, keyspace.GlobalService(ns, "shared-a"))
	})

	// What the hub's view refuses of a cluster shows on its MeshCluster.
	step("published data refused", func(t *testing.T) {
		ranged := meshCluster("ranged-1", "eu-west", "eu-west-1a")
		ranged.Spec.AddressRanges = []v1.CIDR{"10.7.0.0/16"}
		e.create(t, ranged)
		e.waitRecord(t, keyspace.ClusterInfo("ranged-1"), &model.ClusterInfo{Name: "ranged-1", Region: "eu-west",
			Zones: []string{"eu-west-1a"}, Network: "default", AddressRanges: []string{"10.7.0.0/16"}, Limits: defaultLimits})
		waitObject(t, e, ranged, "ranged-1 valid", func(mc *v1.MeshCluster) (bool, string) {
			return all(ranges(mc.Status, "10.7.0.0/16"),
				cond(mc.Status.Conditions, v1.ConditionPublishedDataValid, metav1.ConditionTrue, v1.ReasonPublishedDataValid, mc.Generation))
		})
		if !viewAdmits() {
			t.Log("the View refuses nothing yet (view.Rejections is the contract's stub): the refused path is left to the unit test")
			e.deleteAndWait(t, ranged)
			return
		}
		key := keyspace.ServiceEndpoints("ranged-1", ns, "cart")
		e.put(t, key, serviceEndpoints(ns, "cart", nil, endpoint("192.0.2.10", "eu-west-1a", true), endpoint("10.7.0.1", "eu-west-1a", true)))
		var reason string
		waitObject(t, e, ranged, "PublishedDataValid=False", func(mc *v1.MeshCluster) (bool, string) {
			c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionPublishedDataValid)
			if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, key) || !strings.Contains(c.Message, "192.0.2.10") {
				return false, fmt.Sprintf("PublishedDataValid %+v, want False naming %s and 192.0.2.10", c, key)
			}
			reason = c.Reason
			return true, ""
		})
		e.waitEvent(t, ranged, corev1.EventTypeWarning, reason)
		if got := promtest.ToFloat64(hubRejected.WithLabelValues("ranged-1", reason)); got < 1 {
			t.Errorf("meshfed_hub_rejected_records{cluster=ranged-1,reason=%s} = %v, want at least 1", reason, got)
		}
		e.put(t, key, serviceEndpoints(ns, "cart", nil, endpoint("10.7.0.1", "eu-west-1a", true)))
		waitObject(t, e, ranged, "PublishedDataValid=True again", func(mc *v1.MeshCluster) (bool, string) {
			return all(cond(mc.Status.Conditions, v1.ConditionPublishedDataValid, metav1.ConditionTrue, v1.ReasonPublishedDataValid, mc.Generation))
		})
		e.waitEvent(t, ranged, corev1.EventTypeNormal, v1.ReasonPublishedDataValid)
		e.deleteAndWait(t, ranged)
		if n := promtest.CollectAndCount(hubRejected); n != 0 {
			t.Errorf("%d rejected_records series left after the cluster went", n)
		}
	})

	step("deletes", func(t *testing.T) {
		e.deleteAndWait(t, frontends)
		e.waitGone(t, keyspace.GlobalService(ns, "frontends"))

		e.deleteAndWait(t, failover)
		e.waitGone(t, keyspace.Policy(ns, "cart-failover"))
		waitObject(t, e, cart, "cart's policy reference broken again", func(gs *v1.GlobalService) (bool, string) {
			return all(cond(gs.Status.Conditions, v1.ConditionResolvedRefs, metav1.ConditionFalse, v1.ReasonPolicyNotFound, gs.Generation))
		})

		e.deleteAndWait(t, east)
		e.waitGone(t, keyspace.ClusterPrefix("east-1"))
		if u, r := e.etcdUser(t, "east-1"); u || r {
			t.Errorf("unregistered cluster's etcd user/role remain: %v/%v", u, r)
		}
		// Its endpoints leave the global service's status.
		waitObject(t, e, cart, "cart without east-1", func(gs *v1.GlobalService) (bool, string) {
			return all(gsStatus(gs, "cart.shop.svc.clusterset.local", 2, []v1.ClusterEndpoints{
				{Cluster: "west-1", Localities: []v1.LocalityEndpoints{loc("us-west", "", 0, 1), loc("us-west", "us-west-1a", 2, 2)}},
			}))
		})
		// Other clusters are untouched.
		if got := e.dump(t, keyspace.ClusterPrefix("west-1")); len(got) != 4 {
			t.Errorf("west-1 holds %v, want its info and three services", slices.Sorted(maps.Keys(got)))
		}
	})

	step("restart converges deletes made while the hub was down", func(t *testing.T) {
		stop()
		// Deleted while no hub runs: the finalizer is removed by hand, so the object
		// really goes and no reconciler ever sees its deletion.
		if err := e.kube.Delete(e.ctx, cart); err != nil {
			t.Fatal(err)
		}
		update(t, e, cart, func(gs *v1.GlobalService) { controllerutil.RemoveFinalizer(gs, Finalizer) })
		if err := e.kube.Get(e.ctx, client.ObjectKeyFromObject(cart), cart); !apierrors.IsNotFound(err) {
			t.Fatalf("cart still exists after its finalizer was removed: %v", err)
		}
		// Created while no hub runs.
		late := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late"},
			Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Port: 8080}}}}
		e.create(t, late)
		if got := e.dump(t, keyspace.GlobalService(ns, "cart")); len(got) != 1 {
			t.Fatalf("cart's key gone before the hub restarted: %v", got)
		}
		before := e.dump(t, keyspace.Root)

		e.startManager()
		e.waitGone(t, keyspace.GlobalService(ns, "cart"))
		e.waitRecord(t, keyspace.GlobalService(ns, "late"), &model.GlobalService{Namespace: ns, Name: "late",
			Hostname: "late.shop.svc.clusterset.local", Service: &model.ServiceRef{Namespace: ns, Name: "late"},
			Ports: []model.GlobalPort{{Port: 8080, Protocol: "TCP"}}})
		// Everything else is as the first hub left it.
		after := e.dump(t, keyspace.Root)
		delete(before, keyspace.GlobalService(ns, "cart"))
		delete(after, keyspace.GlobalService(ns, "late"))
		if diff := cmp.Diff(before, after); diff != "" {
			t.Errorf("the restarted hub changed unrelated keys (-before +after):\n%s", diff)
		}
	})
}

var defaultLimits = model.PublishLimits{MaxServices: v1.DefaultMaxServices, MaxEndpointsPerService: v1.DefaultMaxEndpointsPerService,
	MaxValueBytes: v1.DefaultMaxValueBytes}

func ranges(s v1.MeshClusterStatus, want string) string {
	if s.AddressRanges != want {
		return fmt.Sprintf("status.addressRanges %q, want %q", s.AddressRanges, want)
	}
	return ""
}

// viewAdmits reports whether a View refuses an endpoint outside its cluster's
// address ranges (issue 10's admission of records; until it is in, Rejections is a
// stub that refuses nothing).
func viewAdmits() bool {
	v := view.New(view.Options{})
	v.OnUpsert(keyspace.ClusterInfo("probe"), &model.ClusterInfo{Name: "probe", Region: "r", Zones: []string{"z"}, Network: "default",
		AddressRanges: []string{"10.7.0.0/16"}})
	v.OnUpsert(keyspace.ServiceEndpoints("probe", ns, "svc"), serviceEndpoints(ns, "svc", nil, endpoint("192.0.2.10", "z", true)))
	v.OnSynced()
	return len(v.Rejections()) > 0
}

func observed(got, want int64) string {
	if got != want {
		return fmt.Sprintf("status.observedGeneration %d, want %d", got, want)
	}
	return ""
}

func counts(s v1.MeshClusterStatus, services, endpoints int32) string {
	if s.ExportedServices != services || s.ExportedEndpoints != endpoints {
		return fmt.Sprintf("exported %d services and %d endpoints, want %d and %d", s.ExportedServices, s.ExportedEndpoints, services, endpoints)
	}
	return ""
}
