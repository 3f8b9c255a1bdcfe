package check

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/deploy"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// hubVersion is the hub's and the healthy agents' build in these tests.
const hubVersion = "v0.4.0 (commit abc, go1.26.8, linux/amd64)"

func cluster(conds []metav1.Condition, credExpiry, interExpiry time.Duration) *v1.MeshCluster {
	mc := &v1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: "alpha"}, Spec: v1.MeshClusterSpec{Region: "us-east"}}
	mc.Status.Conditions = conds
	hb := metav1.NewTime(now.Add(-3 * time.Second))
	mc.Status.LastHeartbeatTime = &hb
	mc.Status.AgentVersion = hubVersion
	if credExpiry != 0 {
		t := metav1.NewTime(now.Add(credExpiry))
		mc.Status.CredentialsExpiry = &t
	}
	if interExpiry != 0 {
		t := metav1.NewTime(now.Add(interExpiry))
		mc.Status.IntermediateCAExpiry = &t
	}
	return mc
}

func cond(t string, ok bool, reason string) metav1.Condition {
	s := metav1.ConditionTrue
	if !ok {
		s = metav1.ConditionFalse
	}
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: "hub says " + reason}
}

func healthy() []metav1.Condition {
	return []metav1.Condition{cond(v1.ConditionRegistered, true, v1.ReasonRegistered), cond(v1.ConditionConnected, true, v1.ReasonHeartbeatLive),
		cond(v1.ConditionSynced, true, v1.ReasonSynced), cond(v1.ConditionPublishedDataValid, true, v1.ReasonPublishedDataValid),
		cond(v1.ConditionCredentialsValid, true, v1.ReasonCredentialsValid), cond(v1.ConditionIntermediateCA, true, v1.ReasonIntermediateValid)}
}

// with replaces the condition of c's type in healthy().
func with(c metav1.Condition) []metav1.Condition {
	out := healthy()
	for i := range out {
		if out[i].Type == c.Type {
			out[i] = c
		}
	}
	return out
}

const day = 24 * time.Hour

// TestClusterJudgments: every status a MeshCluster can be in gets its verdict, and
// every verdict that is not a pass carries a fix.
func TestClusterJudgments(t *testing.T) {
	for _, tc := range []struct {
		name        string
		mc          *v1.MeshCluster
		check       string
		want        Status
		wantInFixOr string
	}{
		{"healthy credentials", cluster(healthy(), 29*day, 300*day), "alpha credentials", OK, ""},
		{"healthy intermediate", cluster(healthy(), 29*day, 300*day), "alpha intermediate", OK, ""},
		{"credentials within the window", cluster(healthy(), 6*day, 300*day), "alpha credentials", Warn, "meshfedctl cluster register alpha"},
		{"credentials Expiring", cluster(with(cond(v1.ConditionCredentialsValid, false, v1.ReasonCredentialsExpiring)), 2*day, 300*day), "alpha credentials", Warn, "renewals_total"},
		{"credentials Expired", cluster(with(cond(v1.ConditionCredentialsValid, false, v1.ReasonCredentialsExpired)), -time.Hour, 300*day), "alpha credentials", Fail, "then restart the agent"},
		{"credentials past expiry, status not updated yet", cluster(healthy(), -time.Minute, 300*day), "alpha credentials", Fail, "meshfedctl cluster register alpha"},
		{"credentials never signed", cluster(with(cond(v1.ConditionCredentialsValid, false, v1.ReasonCredentialsPending)), 0, 300*day), "alpha credentials", Warn, "renews"},
		{"intermediate within the window", cluster(healthy(), 29*day, 3*day), "alpha intermediate", Warn, "renews its intermediate"},
		{"intermediate expired", cluster(with(cond(v1.ConditionIntermediateCA, false, v1.ReasonIntermediateExpired)), 29*day, -day), "alpha intermediate", Fail, "renews its intermediate"},
		{"heartbeat lapsed", cluster(with(cond(v1.ConditionConnected, false, v1.ReasonHeartbeatLapsed)), 29*day, 300*day), "alpha heartbeat", Fail, "agent of alpha is not heartbeating"},
		{"revoked", cluster(with(cond(v1.ConditionRegistered, false, v1.ReasonRevoked)), 29*day, 300*day), "alpha registration", Fail, "meshfedctl cluster register alpha"},
		{"not synced", cluster(with(cond(v1.ConditionSynced, false, v1.ReasonNotSynced)), 29*day, 300*day), "alpha synced", Fail, "initial publish"},
		{"agent never reported its version", func() *v1.MeshCluster {
			mc := cluster(healthy(), 29*day, 300*day)
			mc.Status.AgentVersion = ""
			return mc
		}(), "alpha agent version", Fail, "upgrade the agent"},
		{"refused data", cluster(with(cond(v1.ConditionPublishedDataValid, false, "AddressOutOfRange")), 29*day, 300*day), "alpha published data", Fail, "--address-ranges"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{}
			checkCluster(context.Background(), r, tc.mc, hubVersion, Options{Now: now, WarnBefore: DefaultWarnBefore})
			var got *Result
			for i := range r.Checks {
				if r.Checks[i].Fix == "" && r.Checks[i].Status != OK {
					t.Errorf("%s is %s without a fix", r.Checks[i].Name, r.Checks[i].Status)
				}
				if r.Checks[i].Name == tc.check {
					got = &r.Checks[i]
				}
			}
			if got == nil {
				t.Fatalf("no check %q in %+v", tc.check, r.Checks)
			}
			if got.Status != tc.want || !strings.Contains(got.Fix, tc.wantInFixOr) {
				t.Errorf("%s: %s %q (fix %q), want %s with %q in the fix", tc.check, got.Status, got.Detail, got.Fix, tc.want, tc.wantInFixOr)
			}
		})
	}
}

// TestAgentVersion: an agent that never reported its version fails, another release
// than the hub's warns of skew (not another platform or Go version), each with its
// fix; the same release passes.
func TestAgentVersion(t *testing.T) {
	for _, tc := range []struct {
		name, agent, hub string
		want             Status
		inDetail, inFix  string
	}{
		{"same build", hubVersion, hubVersion, OK, "as the hub", ""},
		{"same release on another platform", "v0.4.0 (commit abc, go1.26.8, linux/arm64)", hubVersion, OK, "as the hub", ""},
		{"dev builds", "dev (go1.26.8, linux/amd64)", "dev (go1.26.8, linux/amd64)", OK, "as the hub", ""},
		{"never reported", "", hubVersion, Fail, "unknown", "check the agent of alpha is running"},
		{"never reported, hub unknown too", "", "", Fail, "unknown", "upgrade the agent"},
		{"older agent", "v0.3.1 (commit 123, go1.26.8, linux/amd64)", hubVersion, Warn, "version skew",
			"upgrade meshfed-agent in alpha to v0.4.0 (helm upgrade"},
		{"newer agent", "v0.5.0", hubVersion, Warn, "the hub runs " + hubVersion, "to v0.4.0"},
		{"hub predates versions", hubVersion, "", Warn, "does not publish its version", "upgrade the hub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, detail, fix := agentVersion("alpha", tc.agent, tc.hub)
			if got != tc.want || !strings.Contains(detail, tc.inDetail) || !strings.Contains(fix, tc.inFix) || (got != OK) != (fix != "") {
				t.Errorf("agentVersion(%q, %q) = %s %q (fix %q), want %s with %q in the detail and %q in the fix",
					tc.agent, tc.hub, got, detail, fix, tc.want, tc.inDetail, tc.inFix)
			}
		})
	}
}

// TestClusterWithoutMeshCA: no IntermediateCA condition, no intermediate check.
func TestClusterWithoutMeshCA(t *testing.T) {
	conds := healthy()[:5]
	r := &Report{}
	checkCluster(context.Background(), r, cluster(conds, 29*day, 0), hubVersion, Options{Now: now, WarnBefore: DefaultWarnBefore})
	for _, c := range r.Checks {
		if c.Name == "alpha intermediate" {
			t.Errorf("an intermediate check without the mesh CA: %+v", c)
		}
		if c.Status != OK {
			t.Errorf("%s: %s %s", c.Name, c.Status, c.Detail)
		}
	}
}

func hubMetrics(size, quota float64, nospace int) string {
	return fmt.Sprintf(`# TYPE meshfed_hub_etcd_db_size_bytes gauge
meshfed_hub_etcd_db_size_bytes{endpoint="https://10.0.0.1:2379"} %g
# TYPE meshfed_hub_etcd_quota_bytes gauge
meshfed_hub_etcd_quota_bytes{endpoint="https://10.0.0.1:2379"} %g
# TYPE meshfed_hub_etcd_alarms_active gauge
meshfed_hub_etcd_alarms_active{alarm="CORRUPT"} 0
meshfed_hub_etcd_alarms_active{alarm="NOSPACE"} %d
`, size, quota, nospace)
}

// TestEtcdMetrics: the database against its quota and the alarms, from a hub's
// /metrics; the standby replica (no etcd figures) is passed over for the leader.
func TestEtcdMetrics(t *testing.T) {
	const quota = 2 << 30
	for _, tc := range []struct {
		name            string
		metrics         string
		wantSize, alarm Status
	}{
		{"half", hubMetrics(quota/2, quota, 0), OK, OK},
		{"near the quota", hubMetrics(quota*0.85, quota, 0), Warn, OK},
		{"at the quota, alarmed", hubMetrics(quota*0.99, quota, 1), Fail, Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			standby := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "# nothing") }))
			defer standby.Close()
			leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, tc.metrics) }))
			defer leader.Close()
			r := &Report{}
			checkEtcdMetrics(context.Background(), r, Options{HubMetrics: []string{standby.URL, leader.URL}, HTTP: http.DefaultClient})
			got := map[string]Result{}
			for _, c := range r.Checks {
				got[c.Name] = c
			}
			if c := got["members"]; c.Status != OK || !strings.Contains(c.Detail, "1 reporting") {
				t.Errorf("members: %+v", c)
			}
			if c := got["db size https://10.0.0.1:2379"]; c.Status != tc.wantSize {
				t.Errorf("db size: %+v, want %s", c, tc.wantSize)
			}
			if c := got["alarms"]; c.Status != tc.alarm {
				t.Errorf("alarms: %+v, want %s", c, tc.alarm)
			}
		})
	}
	t.Run("not given", func(t *testing.T) {
		r := &Report{}
		checkEtcdMetrics(context.Background(), r, Options{})
		if len(r.Checks) != 1 || r.Checks[0].Status != Warn || !strings.Contains(r.Checks[0].Fix, "--hub-metrics") {
			t.Errorf("%+v, want one warning naming --hub-metrics", r.Checks)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		down := httptest.NewServer(http.NotFoundHandler())
		down.Close()
		r := &Report{}
		checkEtcdMetrics(context.Background(), r, Options{HubMetrics: []string{down.URL}, HTTP: http.DefaultClient})
		if len(r.Checks) != 1 || r.Checks[0].Status != Fail {
			t.Errorf("%+v, want one failure", r.Checks)
		}
	})
}

// TestPrint: the text form groups checks, marks them and puts each fix under its
// check; the JSON form carries the same; Err is set only by a failure.
func TestPrint(t *testing.T) {
	r := &Report{}
	r.ok(GroupHub, "API server reachable", "https://hub:6443")
	r.warn(GroupEtcd, "members", "not checked", "give --hub-metrics")
	r.fail(GroupClusters, "beta heartbeat", "HeartbeatLapsed", "start beta's agent")
	r.Failed, r.Warnings = 1, 1
	var text bytes.Buffer
	if err := r.Print(&text, "text"); err != nil {
		t.Fatal(err)
	}
	const want = `hub
  ✓ API server reachable: https://hub:6443

hub etcd
  ⚠ members: not checked
      fix: give --hub-metrics

clusters
  ✗ beta heartbeat: HeartbeatLapsed
      fix: start beta's agent

failed: 1, warnings: 1, passed: 1
`
	if text.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", text.String(), want)
	}
	var js bytes.Buffer
	if err := r.Print(&js, "json"); err != nil {
		t.Fatal(err)
	}
	back := &Report{}
	if err := json.Unmarshal(js.Bytes(), back); err != nil || len(back.Checks) != 3 || back.Checks[2].Fix != "start beta's agent" || back.Failed != 1 {
		t.Errorf("json round trip: %v %+v", err, back)
	}
	if r.Err() == nil {
		t.Error("Err is nil with a failed check")
	}
	r.Failed = 0
	if r.Err() != nil {
		t.Error("Err is set by warnings alone")
	}
	if err := r.Print(&js, "yaml"); err == nil || !strings.Contains(err.Error(), "text or json") {
		t.Errorf("-o yaml: %v", err)
	}
}

// TestCRDDiff: an installed CRD equal to the embedded one passes; a version not
// served, another storage version or another schema is named.
func TestCRDDiff(t *testing.T) {
	data, err := deploy.CRDs.ReadFile("crds/meshfed.io_meshclusters.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(data, want); err != nil {
		t.Fatal(err)
	}
	if d := crdDiff(want, want.DeepCopy()); d != "" {
		t.Errorf("equal CRDs: %s", d)
	}
	for _, tc := range []struct {
		name   string
		change func(*apiextensionsv1.CustomResourceDefinition)
		want   string
	}{
		{"not served", func(c *apiextensionsv1.CustomResourceDefinition) { c.Spec.Versions[0].Served = false }, "not served"},
		{"other version", func(c *apiextensionsv1.CustomResourceDefinition) { c.Spec.Versions[0].Name = "v1alpha0" }, "not installed"},
		{"older schema", func(c *apiextensionsv1.CustomResourceDefinition) {
			delete(c.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"].Properties, "credentialsExpiry")
		}, "schema differs"},
	} {
		got := want.DeepCopy()
		tc.change(got)
		if d := crdDiff(want, got); !strings.Contains(d, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, d, tc.want)
		}
	}
}
