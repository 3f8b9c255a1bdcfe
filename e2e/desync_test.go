package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

// TestDesyncDetection is issue 9 item 7: a record lost from one agent's view behind
// its import's back (the fault hook of a meshfedtesthooks build) is detected by the
// agent and by the hub (ViewInSync False, an Event, the desync count) and healed by a
// resync within seconds: ViewInSync True again, the view equal to an untouched
// agent's.
func TestDesyncDetection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-tags", "meshfedtesthooks", "-o", dir+"/", "../cmd/meshfed")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build meshfed with test hooks: %v", err)
	}
	const interval = 2 * time.Second
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 2, MeshfedBinary: filepath.Join(dir, "meshfed"),
		HeartbeatTTL: 6 * time.Second, ViewCheckInterval: interval, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)
	hub := hubClient(t, s)
	alpha, beta := s.Cluster("alpha"), s.Cluster("beta")
	for _, c := range []string{"alpha", "beta"} {
		waitCondition(t, ctx, hub, c, v1.ConditionViewInSync, metav1.ConditionTrue)
	}
	desyncs := func() float64 {
		return scrape(t, ctx, s.Hub.MetricsAddr, `meshfed_hub_cluster_view_desyncs_total{cluster="alpha"}`)
	}
	resyncs := func() float64 {
		return scrape(t, ctx, alpha.MetricsAddr, `meshfed_agent_view_resyncs_total{reason="view_inconsistent"}`)
	}
	desyncsBefore, resyncsBefore := desyncs(), resyncs()

	// The fault: beta's registration record leaves alpha's view.
	key := keyspace.ClusterInfo("beta")
	start := time.Now()
	resp, err := http.Post("http://"+alpha.DebugAddr+"/debug/fault/drop?key="+key, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fault injection: %s", resp.Status)
	}

	var detected, healed time.Duration
	testutil.Eventually(t, waitLong, "the hub to count alpha's view as desynced", testutil.Check(func() (bool, string) {
		n := desyncs()
		return n > desyncsBefore, fmt.Sprintf("desyncs %v", n)
	}))
	detected = time.Since(start)
	testutil.Eventually(t, waitLong, "a Warning Event DigestMismatch on alpha", func() error {
		return hubEvent(ctx, hub, "alpha", "Warning", v1.ReasonViewDigestMismatch)
	})
	if n := resyncs(); n <= resyncsBefore {
		t.Errorf("alpha's agent counted %v resyncs (view_inconsistent), want more than %v", n, resyncsBefore)
	}

	testutil.Eventually(t, waitLong, "alpha's view healed: equal to beta's, ViewInSync True after the fault", func() error {
		mc := &v1.MeshCluster{}
		if err := hub.Get(ctx, client.ObjectKey{Name: "alpha"}, mc); err != nil {
			return err
		}
		c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionViewInSync)
		if c == nil || c.Status != metav1.ConditionTrue || !c.LastTransitionTime.After(start) {
			return fmt.Errorf("ViewInSync is %+v", c)
		}
		return sameViews(ctx, alpha.DebugAddr, beta.DebugAddr)
	})
	healed = time.Since(start)
	t.Logf("fault detected by the hub after %s, healed (hub True, view equal) after %s (check interval %s)",
		detected.Round(time.Millisecond), healed.Round(time.Millisecond), interval)
	if healed > 5*interval+10*time.Second {
		t.Errorf("healing took %s", healed)
	}

	// The checks go on: the hub judges later reports, at later revisions.
	message := func() string {
		mc := &v1.MeshCluster{}
		if err := hub.Get(ctx, client.ObjectKey{Name: "alpha"}, mc); err != nil {
			return err.Error()
		}
		c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionViewInSync)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Sprintf("ViewInSync is %+v", c)
		}
		return c.Message
	}
	first := message()
	testutil.Eventually(t, waitLong, "a later report judged in sync", testutil.Check(func() (bool, string) {
		m := message()
		return m != first && strings.HasPrefix(m, "at revision "), fmt.Sprintf("%q after %q", m, first)
	}))
}

// sameViews compares what two agents import from the hub: every cluster's
// registration, synced marker and services, the global services and policies.
func sameViews(ctx context.Context, a, b string) error {
	project := func(addr string) (string, error) {
		v, err := agentView(ctx, addr)
		if err != nil {
			return "", err
		}
		type cluster struct {
			Name     string
			Info     any
			Synced   bool
			Services any
		}
		var out struct {
			Clusters         []cluster
			Globals, Polices any
		}
		for _, c := range v.Clusters {
			out.Clusters = append(out.Clusters, cluster{c.Name, c.Info, c.Synced, c.Services})
		}
		out.Globals, out.Polices = v.GlobalServices, v.Policies
		js, err := json.Marshal(out)
		return string(js), err
	}
	pa, err := project(a)
	if err != nil {
		return err
	}
	pb, err := project(b)
	if err != nil {
		return err
	}
	if pa != pb {
		return fmt.Errorf("views differ:\n%s\n%s", pa, pb)
	}
	return nil
}

// scrape reads one sample (exact name and labels) from a /metrics page; 0 if absent.
func scrape(t *testing.T, ctx context.Context, addr, sample string) float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

// hubEvent finds an Event of the hub's on a MeshCluster with type and reason.
func hubEvent(ctx context.Context, hub client.Client, cluster, typ, reason string) error {
	list := &eventsv1.EventList{}
	if err := hub.List(ctx, list, client.InNamespace(metav1.NamespaceDefault)); err != nil {
		return err
	}
	var seen []string
	for _, ev := range list.Items {
		if ev.Regarding.Name != cluster {
			continue
		}
		if ev.Type == typ && ev.Reason == reason {
			return nil
		}
		seen = append(seen, ev.Type+"/"+ev.Reason)
	}
	return fmt.Errorf("events on %s: %v", cluster, seen)
}
