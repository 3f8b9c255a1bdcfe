package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

// Issue 10, item 3: revoking a cluster takes effect at once. An attacker holds beta's
// agent credentials (copied from beta's Secret); the operator unregisters and
// registers beta again, or revokes it. From then on etcd refuses the stolen
// certificate for reads and writes, its open watch ends, a new registration's
// credentials work, and the other clusters' calls never fail nor move.
func init() {
	addAttack("revoke: unregister and register again refuse the stolen certificate", func(t *testing.T, w *attackWorld) {
		stolen := w.stealCredentials(t, "beta")
		w.whileOthersServe(t, func() {
			watch := openWatch(t, w.ctx, stolen)
			start := time.Now()
			meshfedctl(t, w.ctx, "cluster", "unregister", "beta", "--hub-kubeconfig", w.s.Hub.Kubeconfig)
			took := time.Since(start)
			refused(t, w.ctx, stolen, "after unregister")
			t.Logf("cluster unregister took %s; the open watch ended %s after it returned", took.Round(time.Millisecond),
				watchEnds(t, watch).Round(time.Millisecond))
			w.registerAgain(t, "beta")
			refused(t, w.ctx, stolen, "after registering again")
			refusedWatch(t, w.ctx, stolen)
		})
	})

	addAttack("revoke: cluster revoke refuses the stolen certificate at once", func(t *testing.T, w *attackWorld) {
		stolen := w.stealCredentials(t, "beta")
		w.whileOthersServe(t, func() {
			watch := openWatch(t, w.ctx, stolen)
			start := time.Now()
			meshfedctl(t, w.ctx, "cluster", "revoke", "beta", "--hub-kubeconfig", w.s.Hub.Kubeconfig)
			took := time.Since(start)
			// At once: the command returns once the hub deleted the user.
			refused(t, w.ctx, stolen, "right after cluster revoke")
			t.Logf("cluster revoke took %s; the open watch ended %s after it returned", took.Round(time.Millisecond),
				watchEnds(t, watch).Round(time.Millisecond))
			mc := &v1.MeshCluster{}
			if err := w.hub.Get(w.ctx, client.ObjectKey{Name: "beta"}, mc); err != nil {
				t.Fatal(err)
			}
			if c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionRegistered); c == nil ||
				c.Status != metav1.ConditionFalse || c.Reason != v1.ReasonRevoked {
				t.Errorf("revoked beta's Registered condition: %+v, want False/%s", c, v1.ReasonRevoked)
			}
			w.waitRevokedEvent(t, "beta")
			// Every reader drops beta: alpha's agent no longer holds its records.
			testutil.Eventually(t, waitLong, "alpha's agent to drop beta", func() error {
				v, err := agentView(w.ctx, w.s.Cluster("alpha").DebugAddr)
				if err != nil {
					return err
				}
				if n := len(published(v, "beta")); n > 0 {
					return fmt.Errorf("alpha's view still holds %d services of beta", n)
				}
				return nil
			})
			w.registerAgain(t, "beta")
			refused(t, w.ctx, stolen, "after registering again")
		})
	})
}

// stealCredentials is an etcd client with a copy of cluster's agent credentials, as an
// attacker who read the member cluster's Secret holds them: registering again
// replaces the Secret, never the copy.
func (w *attackWorld) stealCredentials(t *testing.T, cluster string) *clientv3.Client {
	t.Helper()
	kube := kubernetes.NewForConfigOrDie(w.s.Cluster(cluster).Config())
	creds, err := agentcreds.Load(w.ctx, kube, hubinfo.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	copied := etcdconn.Credentials{Endpoints: append([]string(nil), creds.Etcd.Endpoints...),
		CA: append([]byte(nil), creds.Etcd.CA...), Cert: append([]byte(nil), creds.Etcd.Cert...), Key: append([]byte(nil), creds.Etcd.Key...)}
	c, err := etcdconn.New(w.ctx, copied)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := probe(w.ctx, c, cluster); err != nil {
		t.Fatalf("the stolen credentials (etcd user %s) do not work before the revocation: %v", creds.User(), err)
	}
	t.Logf("stolen: etcd user %s", creds.User())
	return c
}

// probe reads the keyspace and asks for a write of cluster's services, with a
// transaction whose condition never holds: etcd checks the permission of every
// operation of a transaction, so a refused write is refused, and an allowed one
// writes nothing that the agents would read.
func probe(ctx context.Context, c *clientv3.Client, cluster string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := c.Get(ctx, keyspace.ClustersPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	key := keyspace.ServiceEndpoints(cluster, "shop", "revoke-probe")
	if _, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Version(key), "<", 0)).Then(clientv3.OpPut(key, "x")).Commit(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// refused asserts that etcd refuses the client's reads and writes now, without a
// wait.
func refused(t *testing.T, ctx context.Context, c *clientv3.Client, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err := c.Get(ctx, keyspace.Root, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("%s: read with the stolen certificate: %v, want permission denied", when, err)
	}
	_, err = c.Put(ctx, keyspace.ServiceEndpoints("beta", "shop", "cart"), "hijack")
	if !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("%s: write with the stolen certificate: %v, want permission denied", when, err)
	}
	_, err = c.Put(ctx, keyspace.ClusterHeartbeat("beta"), "hijack")
	if !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("%s: heartbeat with the stolen certificate: %v, want permission denied", when, err)
	}
}

// openWatch opens a watch of every cluster's records and waits until etcd created it.
func openWatch(t *testing.T, ctx context.Context, c *clientv3.Client) clientv3.WatchChan {
	t.Helper()
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	watch := c.Watch(wctx, keyspace.ClustersPrefix(), clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	select {
	case resp := <-watch:
		if !resp.Created || resp.Err() != nil {
			t.Fatalf("the stolen certificate's watch was not created: %v", resp.Err())
		}
	case <-time.After(waitLong):
		t.Fatal("the stolen certificate's watch was not created in time")
	}
	return watch
}

// watchEnds asserts that an open watch of the stolen certificate ends (the hub's
// Guard cuts it, and etcd refuses it when the client opens it again), and that no
// event reaches it before. It returns how long it waited.
func watchEnds(t *testing.T, watch clientv3.WatchChan) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(waitLong)
	events := 0
	for {
		select {
		case resp, ok := <-watch:
			if !ok {
				return time.Since(start)
			}
			events += len(resp.Events)
			if resp.Canceled || resp.Err() != nil {
				if events > 0 {
					t.Logf("the stolen watch received %d events before it ended (changes made before the revocation)", events)
				}
				return time.Since(start)
			}
		case <-deadline:
			t.Errorf("the stolen certificate's open watch still runs %s after the revocation (%d events since)", waitLong, events)
			return time.Since(start)
		}
	}
}

// refusedWatch asserts that a new watch of the stolen certificate is refused.
func refusedWatch(t *testing.T, ctx context.Context, c *clientv3.Client) {
	t.Helper()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	select {
	case resp := <-c.Watch(wctx, keyspace.ClustersPrefix(), clientv3.WithPrefix()):
		if !resp.Canceled || resp.Err() == nil || !strings.Contains(resp.Err().Error(), rpctypes.ErrPermissionDenied.Error()) {
			t.Errorf("a new watch with the stolen certificate: canceled=%v err=%v, want refused with permission denied", resp.Canceled, resp.Err())
		}
	case <-time.After(waitLong):
		t.Error("a new watch with the stolen certificate was neither refused nor answered")
	}
}

// meshfedctl runs the meshfedctl binary, as an operator would.
func meshfedctl(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, meshfedctlBin(), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("meshfedctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("meshfedctl %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// registerAgain registers cluster with meshfedctl, with the settings the sandbox
// gave it, restarts its agent (which ends itself when its Secret holds a new
// registration's certificate; kubelet would restart it), and waits until the new
// credentials work, every cluster is Connected and Synced and a client in cluster
// lands on its own zone again: the shared world is as it was for later attacks.
func (w *attackWorld) registerAgain(t *testing.T, cluster string) {
	t.Helper()
	c := w.s.Cluster(cluster)
	meshfedctl(t, w.ctx, "cluster", "register", cluster, "--hub-kubeconfig", w.s.Hub.Kubeconfig, "--kubeconfig", c.Kubeconfig,
		"--region", c.Region, "--zones", strings.Join(c.Zones, ","), "--network", c.Network, "--gateway", c.GatewayAddr,
		"--address-ranges", testnet.Range) // as the sandbox registered it: else discovered, and the test hosts' addresses refused
	w.stealCredentials(t, cluster) // the new registration's credentials work
	// The running agent connects as the earlier registration's user: it ends itself
	// once it reads the new Secret.
	pid := c.AgentPID
	testutil.Eventually(t, waitLong, cluster+"'s agent to end itself", func() error {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("agent %d still runs (%v)", pid, err)
		}
		return nil
	})
	logged, err := os.ReadFile(filepath.Join(w.s.Dir, "logs", cluster+"-agent.log"))
	if err != nil || !strings.Contains(string(logged), "registered again") {
		t.Errorf("%s's agent log does not say why it ended (%v)", cluster, err)
	}
	w.s.StopAgent(cluster, syscall.SIGTERM) // gone already; as kubelet, start it again
	if err := w.s.StartAgent(w.ctx, cluster); err != nil {
		t.Fatal(err)
	}
	if err := w.s.WaitConnected(w.ctx, waitLong); err != nil {
		t.Fatal(err)
	}
	conn := w.client(t, c.Name, "cart.shop.svc.clusterset.local:8080")
	landsOn(t, w.ctx, conn, cluster+"/"+c.Zones[0])
}

// whileOthersServe runs f while clients in every other cluster call cart, and
// asserts that none of their calls failed or left their own zone.
func (w *attackWorld) whileOthersServe(t *testing.T, f func()) {
	t.Helper()
	var others []*traffic
	var wants []string
	for _, c := range w.s.Clusters {
		if c.Name == "beta" {
			continue
		}
		conn := w.client(t, c.Name, "cart.shop.svc.clusterset.local:8080")
		want := c.Name + "/" + c.Zones[0]
		landsOn(t, w.ctx, conn, want)
		others = append(others, startTraffic(t, c.Name, conn))
		wants = append(wants, want)
	}
	f()
	for i, tr := range others {
		tr.Stop()
		calls, failed := tr.Totals()
		if failed > 0 {
			t.Errorf("%s: %d of %d calls failed: %v", tr.name, failed, calls, tr.Failures())
		}
		tr.mu.Lock()
		for _, landed := range tr.landed {
			for id, n := range landed {
				if id != wants[i] {
					t.Errorf("%s: %d calls landed on %s, want all on %s", tr.name, n, id, wants[i])
				}
			}
		}
		tr.mu.Unlock()
		if calls == 0 {
			t.Errorf("%s: no calls made", tr.name)
		}
		t.Logf("%s: %d calls, %d failed, all on %s", tr.name, calls, failed, wants[i])
	}
}

// waitRevokedEvent waits for the hub's Warning Event Revoked on cluster's MeshCluster.
func (w *attackWorld) waitRevokedEvent(t *testing.T, cluster string) {
	t.Helper()
	testutil.Eventually(t, waitLong, "Event Revoked on "+cluster, func() error {
		list := &eventsv1.EventList{}
		if err := w.hub.List(w.ctx, list, client.InNamespace(metav1.NamespaceDefault)); err != nil {
			return err
		}
		for _, ev := range list.Items {
			if ev.Regarding.Kind == "MeshCluster" && ev.Regarding.Name == cluster && ev.Reason == v1.ReasonRevoked && ev.Type == "Warning" {
				return nil
			}
		}
		return errors.New("no such Event yet")
	})
}
