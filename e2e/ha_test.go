package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// TestHAHub is issue 9 item 4's acceptance: the documented HA hub (two replicas with
// --leader-elect over a real 3-member etcd cluster with mTLS, agents given every
// member) under continuous proxyless gRPC traffic and EndpointSlice churn survives
// kill -9 of the leading hub replica, of an etcd follower and of the etcd leader:
// no failed call, the other replica takes the Lease over, status converges after each
// fault, and at the end every agent's view equals what was published.
func TestHAHub(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	host := testnet.New(t, 6)
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 3, MeshfedBinary: meshfedBin(),
		EtcdMembers: 3, HubReplicas: 2, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Down)
	hub := hubClient(t, s)
	etcd := s.Etcd()
	alpha := s.Cluster("alpha")

	// Every agent was given every member (through the hub ConfigMap and registration),
	// so it rides through the loss of any one.
	for _, c := range s.Clusters {
		creds, err := agentcreds.Load(ctx, kubernetes.NewForConfigOrDie(c.Config()), hubinfo.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(creds.Etcd.Endpoints, etcd.Endpoints()) {
			t.Fatalf("%s's agent has etcd endpoints %v, want every member %v", c.Name, creds.Etcd.Endpoints, etcd.Endpoints())
		}
	}

	// cart has three endpoints in beta and three in gamma, each a real gRPC echo
	// backend that answers with "cluster/zone". The first of each cluster stays ready;
	// churn flips the others, so a healthy target always exists and every call can
	// succeed whatever the control plane does.
	backends := []string{"beta", "gamma"}
	truth := map[string]*service{}
	var specs []string
	for i, name := range backends {
		c := s.Cluster(name)
		svc := &service{namespace: "shop", name: "cart", port: 8080}
		for j := range 3 {
			addr := host.Addr(3*i + j).String()
			zone := c.Zones[j%2]
			svc.endpoints = append(svc.endpoints, ready(addr, zone))
			specs = append(specs, net.JoinHostPort(addr, "8080")+"="+name+"/"+zone)
		}
		truth[name] = svc
		if err := svc.apply(ctx, kubernetes.NewForConfigOrDie(c.Config())); err != nil {
			t.Fatal(err)
		}
	}
	host.Start(t, "grpc-echo", []string{meshfedTestBinary(t)}, grpcEchoEnv+"="+strings.Join(specs, ","))
	if err := hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	cart := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}}}}
	if err := hub.Create(ctx, cart); err != nil {
		t.Fatal(err)
	}
	conn := proxyless(t, alpha, alpha.Zones[0], "cart.shop.svc.clusterset.local:8080")
	testutil.Eventually(t, waitLong, "the client in alpha reaches cart", func() error {
		landed, failed := send(ctx, conn, 20)
		if failed > 0 {
			return fmt.Errorf("landed %v, %d failed", landed, failed)
		}
		return nil
	})

	start := time.Now()
	traffic := startTraffic(t, "alpha", conn)
	churn := startChurn(t, ctx, s, truth)

	var rows []haRow
	row := func(fault string, at time.Duration, recovery string) {
		hubLeader, etcdLeader := "-", "-"
		if _, holder, err := s.HubLeader(ctx); err == nil {
			hubLeader = holder
		}
		if l, err := etcd.Leader(ctx); err == nil {
			etcdLeader = etcd.Members[l].Name
		}
		calls, failed := traffic.Totals()
		rows = append(rows, haRow{fault: fault, at: at, recovery: recovery, hubLeader: hubLeader, etcdLeader: etcdLeader,
			calls: int64(calls), failed: int64(failed), flips: churn.flips.Load()})
	}
	// converge pauses the churn and waits until the hub's status and every agent's view
	// equal the ground truth: the faults cost no write and status is written again.
	converge := func(what string) time.Duration {
		t.Helper()
		begin := time.Now()
		churn.mu.Lock()
		defer churn.mu.Unlock()
		var first error
		testutil.Eventually(t, waitLong, what+": status and views equal the ground truth", func() error {
			err := converged(ctx, s, hub, truth)
			if first == nil {
				first = err
			}
			return err
		})
		d := time.Since(begin)
		if d > time.Second {
			t.Logf("%s: converged after %s; at first: %v", what, d.Round(10*time.Millisecond), first)
		}
		return d
	}

	d := converge("steady state")
	row("none (steady state)", time.Since(start), fmt.Sprintf("converged %s", d.Round(10*time.Millisecond)))
	waitFlips(t, churn, 4)

	t.Run("kill -9 of the leading hub replica", func(t *testing.T) {
		leader, holder, err := s.HubLeader(ctx)
		if err != nil || leader < 0 {
			t.Fatalf("no replica holds the Lease (holder %q): %v", holder, err)
		}
		at := time.Since(start)
		killed := time.Now()
		s.StopHubReplica(leader, syscall.SIGKILL)
		flips := churn.flips.Load()
		var takeover time.Duration
		testutil.Eventually(t, waitLong, "the other replica takes the Lease over", func() error {
			i, holder, err := s.HubLeader(ctx)
			if err != nil {
				return err
			}
			if i < 0 || i == leader {
				return fmt.Errorf("Lease held by %q", holder)
			}
			takeover = time.Since(killed)
			return nil
		})
		t.Logf("Lease taken over in %s; %d churn flips while no replica led", takeover.Round(10*time.Millisecond), churn.flips.Load()-flips)
		d := converge("after the hub leader's death")
		row("kill -9 hub leader "+holder, at, fmt.Sprintf("Lease taken over in %s, converged %s",
			takeover.Round(10*time.Millisecond), d.Round(10*time.Millisecond)))
		if err := s.StartHubReplica(ctx, leader); err != nil {
			t.Fatal(err)
		}
		if i, holder, _ := s.HubLeader(ctx); i == leader {
			t.Errorf("the restarted replica took the Lease back from %q", holder)
		}
		waitFlips(t, churn, 4)
	})

	etcdFault := func(what string, pick func(leader int) int) {
		t.Helper()
		leader, err := etcd.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		victim := pick(leader)
		at := time.Since(start)
		killed := time.Now()
		etcd.Kill(victim)
		var elected time.Duration
		testutil.Eventually(t, waitLong, "a leader among the remaining members", func() error {
			l, err := etcd.Leader(ctx)
			if err == nil && l == victim {
				return errors.New("the killed member still leads")
			}
			elected = time.Since(killed)
			return err
		})
		// Changes made while the member is down, then status and views with two of
		// three members.
		waitFlips(t, churn, 6)
		d := converge(what + ", member down")
		recovery := fmt.Sprintf("converged %s with %s down", d.Round(10*time.Millisecond), etcd.Members[victim].Name)
		if victim == leader {
			recovery = fmt.Sprintf("new etcd leader in %s, ", elected.Round(10*time.Millisecond)) + recovery
		}
		row("kill -9 "+what+" "+etcd.Members[victim].Name, at, recovery)
		at = time.Since(start)
		if err := etcd.Restart(ctx, victim); err != nil {
			t.Fatal(err)
		}
		waitFlips(t, churn, 4)
		d = converge(what + " restarted")
		row("restart "+etcd.Members[victim].Name, at, fmt.Sprintf("converged %s", d.Round(10*time.Millisecond)))
	}
	t.Run("kill -9 of an etcd follower", func(t *testing.T) {
		etcdFault("etcd follower", func(leader int) int { return (leader + 1) % len(etcd.Members) })
	})
	t.Run("kill -9 of the etcd leader", func(t *testing.T) {
		etcdFault("etcd leader", func(leader int) int { return leader })
	})

	churn.stop()
	d = converge("final state")
	row("end (churn stopped)", time.Since(start), fmt.Sprintf("converged %s", d.Round(10*time.Millisecond)))
	traffic.Stop()

	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "fault\tat\thub leader\tetcd leader\trecovery\tcalls\tfailed\tflips")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", r.fault, r.at.Round(100*time.Millisecond), r.hubLeader, r.etcdLeader,
			r.recovery, r.calls, r.failed, r.flips)
	}
	w.Flush()
	calls, failed := traffic.Totals()
	t.Logf("timeline (%d calls, %d EndpointSlice readiness flips):\n%s", calls, churn.flips.Load(), b.String())

	if failed > 0 {
		t.Errorf("%d of %d calls failed; first failures:\n%s", failed, calls, strings.Join(traffic.Failures(), "\n"))
	}
	if calls-failed < 1000 {
		t.Errorf("only %d calls succeeded: traffic did not flow through the faults", calls-failed)
	}
	for _, r := range s.Hub.Replicas {
		if r.PID == 0 {
			t.Errorf("hub replica %s never ran", r.Name)
		}
	}
	if i, holder, err := s.HubLeader(ctx); err != nil || i < 0 {
		t.Errorf("no replica leads at the end (holder %q): %v", holder, err)
	}
}

type haRow struct {
	fault, recovery      string
	at                   time.Duration
	hubLeader            string
	etcdLeader           string
	calls, failed, flips int64
}

// converged says how the hub's status or an agent's view differs from the ground truth.
func converged(ctx context.Context, s *sandbox.Sandbox, hub client.Client, truth map[string]*service) error {
	for _, o := range s.Clusters {
		v, err := agentView(ctx, o.AgentAddr)
		if err != nil {
			return err
		}
		for cluster, svc := range truth {
			if err := matches(v, cluster, "shop/cart", svc); err != nil {
				return fmt.Errorf("%s's view: %w", o.Name, err)
			}
		}
	}
	for _, c := range s.Clusters {
		mc := &v1.MeshCluster{}
		if err := hub.Get(ctx, client.ObjectKey{Name: c.Name}, mc); err != nil {
			return err
		}
		for _, typ := range []string{v1.ConditionConnected, v1.ConditionSynced} {
			if !meta.IsStatusConditionTrue(mc.Status.Conditions, typ) {
				return fmt.Errorf("%s not %s: %v", c.Name, typ, meta.FindStatusCondition(mc.Status.Conditions, typ))
			}
		}
		want := int32(0)
		if svc := truth[c.Name]; svc != nil {
			want = int32(len(svc.endpoints))
		}
		if mc.Status.ExportedEndpoints != want {
			return fmt.Errorf("%s exports %d endpoints, want %d", c.Name, mc.Status.ExportedEndpoints, want)
		}
	}
	gs := &v1.GlobalService{}
	if err := hub.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "cart"}, gs); err != nil {
		return err
	}
	readyWant := int32(0)
	for _, svc := range truth {
		for _, e := range svc.endpoints {
			if e.ready {
				readyWant++
			}
		}
	}
	if gs.Status.ReadyEndpoints != readyWant || len(gs.Status.Clusters) != len(truth) {
		return fmt.Errorf("GlobalService cart: %d ready endpoints in %d clusters, want %d in %d",
			gs.Status.ReadyEndpoints, len(gs.Status.Clusters), readyWant, len(truth))
	}
	return nil
}

// churn flips the readiness of the backend clusters' churned endpoints, one per tick,
// keeping truth equal to what it wrote. Holding mu pauses it.
type churn struct {
	mu     sync.Mutex
	flips  atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
}

// churnPeriod paces the flips: several per second, each a few API writes.
const churnPeriod = 250 * time.Millisecond

func startChurn(t *testing.T, ctx context.Context, s *sandbox.Sandbox, truth map[string]*service) *churn {
	ctx, cancel := context.WithCancel(ctx)
	ch := &churn{cancel: cancel, done: make(chan struct{})}
	clusters := slices.Sorted(func(yield func(string) bool) {
		for name := range truth {
			if !yield(name) {
				return
			}
		}
	})
	kubes := map[string]kubernetes.Interface{}
	for _, name := range clusters {
		kubes[name] = kubernetes.NewForConfigOrDie(s.Cluster(name).Config())
	}
	go func() {
		defer close(ch.done)
		tick := time.NewTicker(churnPeriod)
		defer tick.Stop()
		for k := 0; ; {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			ch.mu.Lock()
			name := clusters[k%len(clusters)]
			svc := truth[name]
			e := &svc.endpoints[1+(k/len(clusters))%(len(svc.endpoints)-1)] // never the first
			e.ready, e.serving = !e.ready, !e.ready
			err := svc.apply(ctx, kubes[name])
			if err != nil {
				// Not written: the truth stays what the cluster holds.
				e.ready, e.serving = !e.ready, !e.ready
			}
			ch.mu.Unlock()
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("churn in %s: %v", name, err)
				}
				return
			}
			ch.flips.Add(1)
			k++
		}
	}()
	t.Cleanup(ch.stop)
	return ch
}

func (ch *churn) stop() { ch.cancel(); <-ch.done }

// waitFlips waits until the churn has flipped n more endpoints.
func waitFlips(t *testing.T, ch *churn, n int64) {
	t.Helper()
	want := ch.flips.Load() + n
	testutil.Eventually(t, waitLong, fmt.Sprintf("%d churn flips", n), func() error {
		if got := ch.flips.Load(); got < want {
			return fmt.Errorf("%d flips, want %d", got, want)
		}
		return nil
	})
}
