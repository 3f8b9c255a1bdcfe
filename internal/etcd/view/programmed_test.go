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

// Clusters' programmed reports from a real store are admitted on read: refs to
// policies the view does not hold are dropped, a report written under another
// cluster's key or beyond the bounds is refused whole, and one over the cluster's
// value limit is never decoded.
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

	got := v.ProgrammedPolicies("alpha")
	if len(got) != 2 || got[0].Ref.Name != "no-staging" || got[1].Ref.Name != "cart" || got[1].State != model.StateRefused {
		t.Errorf("alpha's admitted report = %+v, want no-staging Programmed and cart Refused (the unknown policy dropped)", got)
	}
	if got := v.ProgrammedPolicies("beta"); got != nil {
		t.Errorf("beta's report for alpha was admitted: %+v", got)
	}
	if got := v.ProgrammedPolicies("gamma"); got != nil {
		t.Errorf("gamma's over-size report was admitted: %+v", got)
	}

	// The policy going drops its entries.
	if _, err := cli.Delete(ctx, keyspace.TrafficPolicy("shop", "cart")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the deleted policy's entry to go", func() error {
		if got := v.ProgrammedPolicies("alpha"); len(got) != 1 {
			return fmt.Errorf("alpha's admitted report = %+v", got)
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
