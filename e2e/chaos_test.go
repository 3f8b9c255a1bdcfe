package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// TestChaos is issue 9's chaos suite, on the documented HA hub (two replicas with
// --leader-elect over a real 3-member etcd cluster with mTLS, agents given every
// member, each agent's etcd traffic through a link the test can cut), the mesh CA, and
// mTLS everywhere: gamma is on a network of its own, so calls to it cross gamma's
// east-west gateway. Proxyless gRPC clients call throughout, and EndpointSlices churn
// in every cluster, while a scripted sequence runs: the hub and its store down, every
// agent restarted meanwhile and a local change served without the hub; the hub frozen
// for longer than dropAfter; kill -9 of the leading hub replica, of an etcd follower
// and of the etcd leader; one cluster cut off from the hub (demoted, then dropped, by
// the others; serving its own); the hub's etcd data lost; a root rotation; and the
// agents' etcd and workload certificates renew throughout. It asserts that no call
// fails, that the hub's status and every agent's view converge to the ground truth
// after each fault, and prints a timeline of faults and where traffic went.
//
// CHAOS_SOAK=30m runs the sequence again and again for that long (make soak).
func TestChaos(t *testing.T) {
	soak, _ := time.ParseDuration(os.Getenv("CHAOS_SOAK"))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute+soak)
	defer cancel()

	host := testnet.New(t, 12)
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 3, MeshfedBinary: meshfedBin(),
		EtcdMembers: 3, HubReplicas: 2, Links: true, HeartbeatTTL: 4 * time.Second,
		// Short-lived credentials: agents' etcd certificates and workload certificates
		// renew again and again, under every fault.
		AgentCertLifetime: 3 * time.Minute, WorkloadCertLifetime: 3 * time.Minute,
		MeshCA: true, MTLS: true, SeparateNetwork: true, WorkloadIdentities: []string{"shop/frontend", "shop/cart"},
		Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)
	hub := hubClient(t, s)
	etcd := s.Etcd()
	alpha, beta, gamma := s.Cluster("alpha"), s.Cluster("beta"), s.Cluster("gamma")
	for _, c := range s.Clusters {
		for _, id := range []string{"frontend", "cart"} {
			testutil.Eventually(t, 2*time.Minute, c.Name+"'s workload certificate for shop/"+id, func() error {
				_, err := os.Stat(filepath.Join(c.CertDir, "shop", id, "tls.crt"))
				return err
			})
		}
	}

	// cart has endpoints in every cluster, each a real gRPC echo backend serving mTLS
	// with its cluster's shop/cart certificate (read again at every handshake) and
	// answering "cluster/zone". The first of each cluster stays ready; churn flips
	// the others, so a healthy target always exists. ledger runs in gamma only: calls
	// from alpha always cross gamma's gateway.
	counts := map[string]int{"alpha": 2, "beta": 3, "gamma": 3}
	truth := map[string]*service{}
	next := 0
	for _, c := range s.Clusters {
		// Every backend of the cluster presents its shop/cart identity: the account
		// the Services say their endpoints run as.
		svc := &service{namespace: "shop", name: "cart", port: 8080, accounts: []string{"cart"}}
		var serve []string
		for j := range counts[c.Name] {
			addr := host.Addr(next).String()
			next++
			zone := c.Zones[j%2]
			svc.endpoints = append(svc.endpoints, ready(addr, zone))
			serve = append(serve, "--serve", net.JoinHostPort(addr, "8080")+"="+c.Name+"/"+zone)
		}
		if c == gamma {
			addr := host.Addr(next).String()
			next++
			serve = append(serve, "--serve", net.JoinHostPort(addr, "9090")+"=gamma-ledger")
			ledger := &service{namespace: "shop", name: "ledger", port: 9090, endpoints: []endpoint{ready(addr, c.Zones[0])},
				accounts: []string{"cart"}}
			if err := ledger.apply(ctx, kubernetes.NewForConfigOrDie(c.Config())); err != nil {
				t.Fatal(err)
			}
		}
		truth[c.Name] = svc
		if err := svc.apply(ctx, kubernetes.NewForConfigOrDie(c.Config())); err != nil {
			t.Fatal(err)
		}
		host.Start(t, c.Name+"-echo", append([]string{meshfedctlBin(), "dev", "echo", "--cert-dir",
			filepath.Join(c.CertDir, "shop", "cart")}, serve...))
	}
	const demote, drop, hold = 3 * time.Second, 10 * time.Second, 5 * time.Second
	policy := &v1.FailoverPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shop"},
		Spec: v1.FailoverPolicySpec{FailbackHold: &metav1.Duration{Duration: hold},
			StaleCluster: v1.StaleClusterPolicy{DemoteAfter: &metav1.Duration{Duration: demote}, DropAfter: &metav1.Duration{Duration: drop}}}}
	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, policy}
	for name, port := range map[string]int32{"cart": 8080, "ledger": 9090} {
		objs = append(objs, &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: port, Protocol: v1.ProtocolGRPC}},
				FailoverPolicyRef: &v1.LocalObjectReference{Name: "shop"}}})
	}
	for _, o := range objs {
		if err := hub.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	a1 := alpha.Zones[0]
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, c := range s.Clusters {
			t.Logf("%s's agent explains cart for zone %s:\n%s", c.Name, c.Zones[0], explain(t, context.Background(), c, c.Zones[0]))
			logTail(t, filepath.Join(s.Dir, "logs", c.Name+"-agent.log"), 40)
		}
	})
	frontend := func(c *sandbox.Cluster) string { return filepath.Join(c.CertDir, "shop", "frontend") }
	cartA := meshClient(t, alpha, a1, "cart.shop.svc.clusterset.local:8080", frontend(alpha))
	cartB := meshClient(t, beta, beta.Zones[0], "cart.shop.svc.clusterset.local:8080", frontend(beta))
	ledgerA := meshClient(t, alpha, a1, "ledger.shop.svc.clusterset.local:9090", frontend(alpha))
	landsOn(t, ctx, cartA, "alpha/"+a1)
	landsOn(t, ctx, cartB, "beta/"+beta.Zones[0])
	landsOn(t, ctx, ledgerA, "gamma-ledger")
	// Each agent saves its view in its own cluster, to serve from after a restart
	// while the hub is down: wait for a save that holds the global services.
	configured := time.Now()
	for _, c := range s.Clusters {
		kube := kubernetes.NewForConfigOrDie(c.Config())
		testutil.Eventually(t, waitLong, c.Name+"'s agent to save its view", func() error {
			cm, err := kube.CoreV1().ConfigMaps(hubinfo.Namespace).Get(ctx, clusteragent.SnapshotConfigMap, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if saved, err := time.Parse(time.RFC3339Nano, cm.Data["savedAt"]); err != nil || saved.Before(configured) {
				return fmt.Errorf("saved at %q", cm.Data["savedAt"])
			}
			return nil
		})
	}

	start := time.Now()
	flows := []*traffic{startTraffic(t, "alpha→cart", cartA), startTraffic(t, "beta→cart", cartB),
		startTraffic(t, "alpha→ledger (gateway)", ledgerA)}
	churn := startChurn(t, ctx, s, truth)
	phase := func(name string) {
		for _, f := range flows {
			f.Phase(name)
		}
	}

	var rows []haRow
	row := func(fault string, at time.Duration, recovery string) {
		hubLeader, etcdLeader := "-", "-"
		if _, holder, err := s.HubLeader(ctx); err == nil {
			hubLeader = holder
		}
		if l, err := etcd.Leader(ctx); err == nil {
			etcdLeader = etcd.Members[l].Name
		}
		var calls, failed int
		for _, f := range flows {
			c, n := f.Totals()
			calls, failed = calls+c, failed+n
		}
		rows = append(rows, haRow{fault: fault, at: at, recovery: recovery, hubLeader: hubLeader, etcdLeader: etcdLeader,
			calls: int64(calls), failed: int64(failed), flips: churn.flips.Load()})
	}
	// converge pauses the churn and waits until the hub's status and every agent's view
	// equal the ground truth: the faults cost no write and status is written again.
	converge := func(what string) time.Duration {
		t.Helper()
		churn.mu.Lock()
		defer churn.mu.Unlock()
		begin := time.Now()
		var first error
		testutil.Eventually(t, 2*waitLong, what+": status and views equal the ground truth", func() error {
			err := converged(ctx, s, hub, truth, map[string]int32{"gamma": 1})
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
	// judged returns an agent's explanation of cart if it shows a cluster demoted or
	// dropped (or held out, with held: churn holds out recovering localities rightly,
	// so only while it pauses).
	judged := func(c *sandbox.Cluster, held bool) string {
		out := explain(t, ctx, c, c.Zones[0])
		words := []string{"stale", "dropped"}
		if held {
			words = append(words, "failback hold")
		}
		for _, word := range words {
			if strings.Contains(out, word) {
				return out
			}
		}
		return ""
	}

	for round := 1; ; round++ {
		phase(fmt.Sprintf("round %d: steady", round))
		d := converge("steady state")
		row(fmt.Sprintf("round %d: steady state", round), time.Since(start), fmt.Sprintf("converged %s", d.Round(10*time.Millisecond)))
		waitFlips(t, churn, 4)

		t.Run("hub and its store down, every agent restarted, a local change", func(t *testing.T) {
			phase("hub down")
			at := time.Since(start)
			s.StopHub(syscall.SIGKILL)
			for i := range etcd.Members {
				etcd.Kill(i)
			}
			for _, c := range s.Clusters {
				s.StopAgent(c.Name, syscall.SIGKILL)
				if err := s.StartAgent(ctx, c.Name); err != nil {
					t.Fatal(err)
				}
				if v, err := agentView(ctx, c.DebugAddr); err != nil || v.Source != "restored" {
					t.Fatalf("%s's restarted agent: %+v, %v; want it serving its restored view", c.Name, v, err)
				}
			}
			// alpha's own change reaches alpha's clients without the hub.
			churn.mu.Lock()
			truth["alpha"].endpoints[0].ready, truth["alpha"].endpoints[0].serving = false, false
			err := truth["alpha"].apply(ctx, kubernetes.NewForConfigOrDie(alpha.Config()))
			churn.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, waitLong, "alpha's clients to leave alpha/"+a1, func() error {
				landed, failed := send(ctx, cartA, 20)
				if landed["alpha/"+a1] > 0 || failed > 0 {
					return fmt.Errorf("landed %v, %d failed", landed, failed)
				}
				return nil
			})
			row("hub + etcd down; agents restarted; local change", at, "served from restored views")
			at = time.Since(start)
			if err := etcd.RestartAll(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.StartHub(ctx); err != nil {
				t.Fatal(err)
			}
			churn.mu.Lock()
			truth["alpha"].endpoints[0].ready, truth["alpha"].endpoints[0].serving = true, true
			err = truth["alpha"].apply(ctx, kubernetes.NewForConfigOrDie(alpha.Config()))
			churn.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			d := converge("hub back")
			row("hub + etcd back", at, fmt.Sprintf("converged %s", d.Round(10*time.Millisecond)))
		})

		t.Run("hub frozen for longer than dropAfter", func(t *testing.T) {
			phase("hub frozen")
			// Churn pauses for this phase: a churned locality that recovers is held out
			// by the failback hold, rightly; any hold now would be the freeze's doing.
			churn.mu.Lock()
			defer churn.mu.Unlock()
			// Every flip so far has reached every agent before the freeze: one that
			// lands after the thaw would rightly hold its locality out.
			testutil.Eventually(t, 2*waitLong, "views equal the ground truth before the freeze", func() error {
				return converged(ctx, s, hub, truth, map[string]int32{"gamma": 1})
			})
			at := time.Since(start)
			frozen := time.Now()
			s.FreezeHub()
			defer s.ThawHub() // also when the phase fails: the next phases need the hub
			testutil.Eventually(t, waitLong, "the freeze to outlast dropAfter", func() error {
				if d := time.Since(frozen); d < drop+2*time.Second {
					return fmt.Errorf("frozen for %v", d.Round(time.Second))
				}
				return nil
			})
			for _, c := range s.Clusters {
				if out := judged(c, true); out != "" {
					t.Fatalf("while the hub is frozen %s's agent judges a cluster by its silence:\n%s", c.Name, out)
				}
			}
			s.ThawHub()
			// For longer than demoteAfter and the failback hold after the thaw, no agent
			// demotes, drops or holds out anyone.
			for end := time.Now().Add(demote + hold); time.Now().Before(end); {
				for _, c := range s.Clusters {
					if out := judged(c, true); out != "" {
						t.Fatalf("after the thaw %s's agent demoted, dropped or held out a healthy cluster:\n%s", c.Name, out)
					}
				}
				time.Sleep(250 * time.Millisecond) // a bounded watch over a window, not a wait for a result
			}
			churn.mu.Unlock()
			// A replica that led when it froze finds its Lease lost on thawing and
			// exits, to come back as a standby: its pod's restart is the sandbox's.
			if err := s.StartHub(ctx); err != nil {
				t.Fatal(err)
			}
			d := converge("after the thaw")
			churn.mu.Lock() // for the deferred Unlock
			row("hub frozen (SIGSTOP) > dropAfter, thawed", at, fmt.Sprintf("nobody judged; converged %s", d.Round(10*time.Millisecond)))
		})

		t.Run("kill -9 of the leading hub replica", func(t *testing.T) {
			phase("hub leader killed")
			if err := s.StartHub(ctx); err != nil { // every replica runs, as its pod would
				t.Fatal(err)
			}
			leader, holder, err := s.HubLeader(ctx)
			if err != nil || leader < 0 {
				t.Fatalf("no replica holds the Lease (holder %q): %v", holder, err)
			}
			at := time.Since(start)
			killed := time.Now()
			s.StopHubReplica(leader, syscall.SIGKILL)
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
			d := converge("after the hub leader's death")
			row("kill -9 hub leader "+holder, at, fmt.Sprintf("Lease taken over in %s, converged %s",
				takeover.Round(10*time.Millisecond), d.Round(10*time.Millisecond)))
			if err := s.StartHubReplica(ctx, leader); err != nil {
				t.Fatal(err)
			}
			waitFlips(t, churn, 4)
		})

		etcdFault := func(what string, pick func(leader int) int) {
			t.Helper()
			phase(what + " killed")
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

		t.Run("beta cut off from the hub", func(t *testing.T) {
			phase("beta partitioned")
			at := time.Since(start)
			// Cut beta off while it judges everyone fresh: what it holds at the cut is
			// what it must keep holding. (After an etcd member's restart a cluster's
			// heartbeat writes may lapse for a moment, which beta rightly sees.)
			testutil.Eventually(t, waitLong, "beta to judge every cluster fresh before the cut", func() error {
				if out := judged(beta, false); out != "" {
					return fmt.Errorf("beta judges:\n%s", out)
				}
				return nil
			})
			if err := s.Partition("beta"); err != nil {
				t.Fatal(err)
			}
			defer s.Heal("beta") //nolint:errcheck // also when the phase fails: the next phases need beta

			for _, want := range []string{"stale", "dropped"} {
				testutil.Eventually(t, waitLong, "alpha's agent to find beta "+want, func() error {
					if out := explain(t, ctx, alpha, a1); !strings.Contains(out, want) {
						return fmt.Errorf("beta not %s:\n%s", want, out)
					}
					return nil
				})
			}
			// beta keeps serving its own, and judges no one.
			landsOn(t, ctx, cartB, "beta/"+beta.Zones[0])
			if out := judged(beta, false); out != "" {
				t.Fatalf("beta, cut off, judges others by their silence:\n%s\ngamma meanwhile:\n%s", out, explain(t, ctx, gamma, gamma.Zones[0]))
			}
			row("beta cut off from the hub", at, "beta demoted then dropped by alpha; beta serves its own")
			at = time.Since(start)
			if err := s.Heal("beta"); err != nil {
				t.Fatal(err)
			}
			d := converge("beta healed")
			row("beta healed", at, fmt.Sprintf("converged %s", d.Round(10*time.Millisecond)))
		})

		t.Run("the hub's etcd data lost", func(t *testing.T) {
			phase("hub etcd data lost")
			at := time.Since(start)
			s.StopHub(syscall.SIGKILL)
			if err := etcd.Wipe(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.StartHub(ctx); err != nil {
				t.Fatal(err)
			}
			d := converge("hub's etcd recreated")
			row("hub etcd data lost, hub restarted", at, fmt.Sprintf("agents republished; converged %s", d.Round(10*time.Millisecond)))
		})

		t.Run("root rotation", func(t *testing.T) {
			phase("root rotation")
			at := time.Since(start)
			for _, step := range []string{"start", "switch", "finish"} {
				out, err := exec.CommandContext(ctx, meshfedctlBin(), "trust", "rotate", step, "--dir", s.Dir,
					"--wait", "3m", "--settle", "3s").CombinedOutput()
				if err != nil {
					t.Fatalf("meshfedctl trust rotate %s: %v\n%s", step, err, out)
				}
			}
			d := converge("after the root rotation")
			row("root rotated (trust rotate start, switch, finish)", at, fmt.Sprintf("took %s; converged %s",
				(time.Since(start)-at).Round(100*time.Millisecond), d.Round(10*time.Millisecond)))
		})

		if soak == 0 || time.Since(start) > soak {
			break
		}
	}

	churn.stop()
	d := converge("final state")
	row("end (churn stopped)", time.Since(start), fmt.Sprintf("converged %s", d.Round(10*time.Millisecond)))
	for _, f := range flows {
		f.Stop()
	}

	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "fault\tat\thub leader\tetcd leader\trecovery\tcalls\tfailed\tflips")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", r.fault, r.at.Round(100*time.Millisecond), r.hubLeader, r.etcdLeader,
			r.recovery, r.calls, r.failed, r.flips)
	}
	w.Flush()
	t.Logf("timeline (%d EndpointSlice readiness flips):\n%s", churn.flips.Load(), b.String())
	b.Reset()
	for _, f := range flows {
		f.Print(&b)
	}
	t.Logf("where traffic went:\n%s", b.String())
	for _, f := range flows {
		calls, failed := f.Totals()
		if failed > 0 {
			t.Errorf("%s: %d of %d calls failed; first failures:\n%s", f.name, failed, calls, strings.Join(f.Failures(), "\n"))
		}
		if calls-failed < 1000 {
			t.Errorf("%s: only %d calls succeeded: traffic did not flow through the faults", f.name, calls-failed)
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

// converged says how the hub's status or an agent's view differs from the ground truth:
// truth holds shop/cart's endpoints per cluster; others counts the endpoints of other
// services a cluster exports.
func converged(ctx context.Context, s *sandbox.Sandbox, hub client.Client, truth map[string]*service, others map[string]int32) error {
	for _, o := range s.Clusters {
		v, err := agentView(ctx, o.DebugAddr)
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
		want := others[c.Name]
		if svc := truth[c.Name]; svc != nil {
			want += int32(len(svc.endpoints))
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
	// stop ends the loop between flips, never during one: a write cancelled in flight
	// may still have been committed, and the truth would then differ from what the
	// cluster holds (the final check once waited 3 minutes for such a flip).
	applyCtx := ctx
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
			err := svc.apply(applyCtx, kubes[name])
			if err != nil {
				// Not written: the truth stays what the cluster holds.
				e.ready, e.serving = !e.ready, !e.ready
			}
			ch.mu.Unlock()
			if err != nil {
				if applyCtx.Err() == nil {
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

// logTail logs the last n lines of a log file.
func logTail(t *testing.T, path string, n int) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s: %v", path, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	t.Logf("%s (last %d lines):\n%s", path, n, strings.Join(lines[max(0, len(lines)-n):], "\n"))
}
