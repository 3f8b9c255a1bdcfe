package view

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Clusters' programmed reports from a real store are admitted on read: a report
// written under another cluster's key is refused whole, one over the cluster's value
// limit is never decoded, reports are read per policy (so refs to other policies are
// never read), and only registered clusters are heard.
func TestProgrammedReportsAreAdmitted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedetcd.Start(ctx, embedetcd.Options{DataDir: t.TempDir(), UnsafeNoFsync: true, ZapLogger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put := func(key string, rec any) {
		t.Helper()
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, key, string(data)); err != nil {
			t.Fatal(err)
		}
	}
	tp := traffic("shop", "cart", "cart")
	tp.Generation = 3
	put(keyspace.TrafficPolicy("shop", "cart"), tp)
	put(keyspace.AuthorizationPolicy("shop", "no-staging"), authz("shop", "no-staging", "cart"))
	for _, c := range []string{"alpha", "beta", "gamma"} {
		info := &model.ClusterInfo{Name: c, Region: "r", Network: "n"}
		if c == "gamma" {
			info.Limits.MaxValueBytes = 200
		}
		put(keyspace.ClusterInfo(c), info)
	}
	ref := func(kind, name string, gen int64) model.PolicyRef {
		return model.PolicyRef{Kind: kind, Namespace: "shop", Name: name, Generation: gen}
	}
	put(keyspace.ClusterProgrammed("alpha"), &model.Programmed{Cluster: "alpha", Policies: []model.PolicyProgrammed{
		{Ref: ref(model.PolicyKindAuthorization, "no-staging", 1), State: model.StateProgrammed},
		{Ref: ref(model.PolicyKindAuthorization, "unknown", 1), State: model.StateProgrammed},
		{Ref: ref(model.PolicyKindTraffic, "cart", 3), State: model.StateRefused, Message: "resource \"x\": retry_policy.num_retries = 0", Node: "n1"},
	}})
	// beta claims to report for alpha.
	put(keyspace.ClusterProgrammed("beta"), &model.Programmed{Cluster: "alpha", Policies: []model.PolicyProgrammed{
		{Ref: ref(model.PolicyKindTraffic, "cart", 3), State: model.StateProgrammed}}})
	// gamma's report exceeds its 200-byte limit.
	put(keyspace.ClusterProgrammed("gamma"), &model.Programmed{Cluster: "gamma", Policies: []model.PolicyProgrammed{
		{Ref: ref(model.PolicyKindTraffic, "cart", 3), State: model.StateRefused, Message: strings.Repeat("x", 300)}}})

	v, _ := newView()
	r, err := kvstore.NewReader(kvstore.ReaderOptions[model.Record]{Client: cli, Prefix: keyspace.Root, Decode: v.Decode, Observer: v})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(runCtx) }() //nolint:errcheck
	defer func() { stop(); <-done }()
	if err := v.WaitLive(ctx); err != nil {
		t.Fatal(err)
	}

	cart := v.Programmed(model.PolicyKindTraffic, "shop", "cart")
	if len(cart) != 1 || cart[0].Cluster != "alpha" || cart[0].State != model.StateRefused || cart[0].Ref.Generation != 3 || cart[0].Connected {
		t.Errorf("reports of the cart policy = %+v, want alpha's alone (Refused, generation 3, no heartbeat): beta's forged and gamma's over-size refused", cart)
	}
	if got := v.Programmed(model.PolicyKindAuthorization, "shop", "no-staging"); len(got) != 1 || got[0].State != model.StateProgrammed {
		t.Errorf("reports of no-staging = %+v", got)
	}
	if got := v.Programmed(model.PolicyKindTraffic, "shop", "no-staging"); len(got) != 0 {
		t.Errorf("a report of another kind's policy was read as a traffic policy's: %+v", got)
	}

	// A heartbeat makes the report current; unregistering the cluster silences it.
	put(keyspace.ClusterHeartbeat("alpha"), &model.Heartbeat{Time: time.Now(), TTL: 10, Agent: "a"})
	testutil.Eventually(t, 10*time.Second, "alpha connected", func() error {
		if got := v.Programmed(model.PolicyKindTraffic, "shop", "cart"); len(got) != 1 || !got[0].Connected {
			return fmt.Errorf("reports %+v", got)
		}
		return nil
	})
	if _, err := cli.Delete(ctx, keyspace.ClusterInfo("alpha")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the unregistered cluster's report to go", func() error {
		if got := v.Programmed(model.PolicyKindTraffic, "shop", "cart"); len(got) != 0 {
			return fmt.Errorf("reports %+v", got)
		}
		return nil
	})
}

func TestProgrammedValidate(t *testing.T) {
	ok := model.PolicyProgrammed{Ref: model.PolicyRef{Kind: model.PolicyKindTraffic, Namespace: "shop", Name: "cart", Generation: 1}, State: model.StatePending}
	for name, p := range map[string]*model.Programmed{
		"unknown kind":      {Cluster: "a", Policies: []model.PolicyProgrammed{{Ref: model.PolicyRef{Kind: "Other", Namespace: "shop", Name: "x"}, State: model.StatePending}}},
		"unknown state":     {Cluster: "a", Policies: []model.PolicyProgrammed{{Ref: ok.Ref, State: "Maybe"}}},
		"long message":      {Cluster: "a", Policies: []model.PolicyProgrammed{{Ref: ok.Ref, State: model.StateRefused, Message: strings.Repeat("x", model.MaxProgrammedMessage+1)}}},
		"listed twice":      {Cluster: "a", Policies: []model.PolicyProgrammed{ok, ok}},
		"invalid cluster":   {Cluster: "A_", Policies: []model.PolicyProgrammed{ok}},
		"invalid namespace": {Cluster: "a", Policies: []model.PolicyProgrammed{{Ref: model.PolicyRef{Kind: model.PolicyKindTraffic, Namespace: "Shop", Name: "x"}, State: model.StatePending}}},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, p)
		}
	}
	if err := (&model.Programmed{Cluster: "a", Policies: []model.PolicyProgrammed{ok}}).Validate(); err != nil {
		t.Errorf("valid report refused: %v", err)
	}
	if got := model.Truncate("héllo wörld", 8); len(got) > 8 || !strings.HasSuffix(got, "…") {
		t.Errorf("Truncate = %q", got)
	}
}
