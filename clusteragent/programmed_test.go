package clusteragent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

type fakeProgrammed struct {
	policies chan []model.PolicyProgrammed
	current  []model.PolicyProgrammed
	changed  chan struct{}
}

func (f *fakeProgrammed) Programmed() []model.PolicyProgrammed {
	select {
	case f.current = <-f.policies:
	default:
	}
	return f.current
}
func (f *fakeProgrammed) ProgrammedChanged() <-chan struct{} { return f.changed }

func entry(name, state, msg string) model.PolicyProgrammed {
	return model.PolicyProgrammed{Ref: model.PolicyRef{Kind: model.PolicyKindTraffic, Namespace: "shop", Name: name, Generation: 1},
		State: state, Message: msg}
}

// The leader writes the report at once, again when it changes, and not when it does
// not; a report over the cluster's value limit keeps its refusals.
func TestReportProgrammed(t *testing.T) {
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
	v := view.New(view.Options{})
	src := &fakeProgrammed{policies: make(chan []model.PolicyProgrammed, 1), changed: make(chan struct{}, 1),
		current: []model.PolicyProgrammed{entry("cart", model.StatePending, "")}}
	testutil.Run(t, "reporter", func(ctx context.Context) error {
		reportProgrammed(ctx, cli, v, "alpha", src, 10*time.Millisecond, testr.New(t))
		return nil
	})
	read := func() (*model.Programmed, int64) {
		resp, err := cli.Get(ctx, keyspace.ClusterProgrammed("alpha"))
		if err != nil || len(resp.Kvs) == 0 {
			return nil, 0
		}
		rec, err := model.Decode(keyspace.ClusterProgrammed("alpha"), resp.Kvs[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		return rec.(*model.Programmed), resp.Kvs[0].Version
	}
	testutil.Eventually(t, 10*time.Second, "the first report", func() error {
		if p, _ := read(); p == nil || len(p.Policies) != 1 || p.Policies[0].State != model.StatePending {
			return fmt.Errorf("report %+v", p)
		}
		return nil
	})
	src.policies <- []model.PolicyProgrammed{entry("cart", model.StateProgrammed, "")}
	src.changed <- struct{}{}
	var version int64
	testutil.Eventually(t, 10*time.Second, "the changed report", func() error {
		p, ver := read()
		if p == nil || p.Policies[0].State != model.StateProgrammed {
			return fmt.Errorf("report %+v", p)
		}
		version = ver
		return nil
	})
	for range 3 { // signals that change nothing write nothing
		src.changed <- struct{}{}
	}
	src.policies <- []model.PolicyProgrammed{entry("cart", model.StateProgrammed, ""), entry("web", model.StateRefused, "no")}
	src.changed <- struct{}{}
	testutil.Eventually(t, 10*time.Second, "the next change", func() error {
		p, ver := read()
		if p == nil || len(p.Policies) != 2 {
			return fmt.Errorf("report %+v", p)
		}
		if ver != version+1 {
			return fmt.Errorf("key version %d after %d: unchanged reports were written", ver, version)
		}
		return nil
	})

	// Over the limit: the refusals stay.
	v.OnUpsert(keyspace.ClusterInfo("alpha"), &model.ClusterInfo{Name: "alpha", Region: "r", Network: "n",
		Limits: model.PublishLimits{MaxValueBytes: 600}})
	var many []model.PolicyProgrammed
	for i := range 20 {
		many = append(many, entry(fmt.Sprintf("p%02d", i), model.StateProgrammed, ""))
	}
	many = append(many, entry("z", model.StateRefused, strings.Repeat("m", 100)))
	val := programmedValue(v, "alpha", many, testr.New(t))
	var got model.Programmed
	if err := json.Unmarshal(val, &got); err != nil || len(val) > 600 || len(got.Policies) != 1 || got.Policies[0].Ref.Name != "z" {
		t.Errorf("over-limit report (%d bytes) = %+v, %v; want the refusal alone", len(val), got, err)
	}
}
