package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/yaml"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
)

func sampleReport() *Report {
	return &Report{
		Clusters: []ClusterRow{
			{Name: "east", Region: "us-east-1", Zones: "us-east-1a,us-east-1b", Network: "default",
				Registered: "True", Connected: "True", Synced: "True", ViewInSync: "True", Published: "Valid", HeartbeatAge: "5s", Services: 3, Endpoints: 12, Credentials: "Valid 19d4h"},
			{Name: "west-long-name", Region: "us-west-2", Zones: "us-west-2a", Network: "vpc-2",
				Registered: "True", Connected: "False", Synced: "Unknown", ViewInSync: "Unknown", Published: "Unknown", HeartbeatAge: "never", Credentials: "Expired", Message: "heartbeat lapsed"},
		},
		GlobalServices: []ServiceRow{
			{Namespace: "shop", Name: "cart", Hostname: "cart.shop.global", Providers: "all", Clusters: 2, Ready: 7, Policy: "eu-first"},
			{Namespace: "shop", Name: "list", Hostname: "list.shop.global", Providers: "east", Clusters: 1},
		},
	}
}

const sampleTable = `CLUSTER         REGION     ZONES                  NETWORK  REGISTERED  CONNECTED  SYNCED   VIEW     PUBLISHED  HEARTBEAT  SERVICES  ENDPOINTS  CREDENTIALS
east            us-east-1  us-east-1a,us-east-1b  default  True        True       True     True     Valid      5s         3         12         Valid 19d4h
west-long-name  us-west-2  us-west-2a             vpc-2    True        False      Unknown  Unknown  Unknown    never      0         0          Expired

GLOBAL SERVICE  HOSTNAME          PROVIDERS  CLUSTERS  READY  POLICY
shop/cart       cart.shop.global  all        2         7      eu-first
shop/list       list.shop.global  east       1         0      
`

const clustersOnlyTable = `CLUSTER  REGION     ZONES       NETWORK  REGISTERED  CONNECTED  SYNCED   VIEW     PUBLISHED  HEARTBEAT  SERVICES  ENDPOINTS  CREDENTIALS
solo     eu-west-1  eu-west-1a  default  Unknown     Unknown    Unknown  Unknown  Unknown    never      0         0          Unknown
`

const emptyJSON = `{
  "clusters": []
}
`

const soloJSON = `{
  "clusters": [
    {
      "name": "solo",
      "region": "eu-west-1",
      "zones": "eu-west-1a",
      "network": "default",
      "registered": "Unknown",
      "connected": "Unknown",
      "synced": "Unknown",
      "viewInSync": "Unknown",
      "published": "Unknown",
      "heartbeatAge": "never",
      "services": 0,
      "endpoints": 0,
      "credentials": "Unknown"
    }
  ]
}
`

const soloYAML = `clusters:
- connected: Unknown
  credentials: Unknown
  endpoints: 0
  heartbeatAge: never
  name: solo
  network: default
  published: Unknown
  region: eu-west-1
  registered: Unknown
  services: 0
  synced: Unknown
  viewInSync: Unknown
  zones: eu-west-1a
`

func soloReport() *Report {
	return &Report{Clusters: []ClusterRow{{Name: "solo", Region: "eu-west-1", Zones: "eu-west-1a", Network: "default",
		Registered: "Unknown", Connected: "Unknown", Synced: "Unknown", ViewInSync: "Unknown", Published: "Unknown", HeartbeatAge: "never", Credentials: "Unknown"}}}
}

func TestPrint(t *testing.T) {
	for name, tc := range map[string]struct {
		report *Report
		format string
		want   string
	}{
		"table":                    {sampleReport(), "table", sampleTable},
		"empty format is table":    {sampleReport(), "", sampleTable},
		"table without services":   {soloReport(), "table", clustersOnlyTable},
		"table of an empty report": {&Report{Clusters: []ClusterRow{}}, "table", "CLUSTER  REGION  ZONES  NETWORK  REGISTERED  CONNECTED  SYNCED  VIEW  PUBLISHED  HEARTBEAT  SERVICES  ENDPOINTS  CREDENTIALS\n"},
		"json":                     {soloReport(), "json", soloJSON},
		"json of an empty report":  {&Report{Clusters: []ClusterRow{}}, "json", emptyJSON},
		"yaml":                     {soloReport(), "yaml", soloYAML},
		"yaml of an empty report":  {&Report{Clusters: []ClusterRow{}}, "yaml", "clusters: []\n"},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tc.report.Print(&buf, tc.format); err != nil {
				t.Fatalf("Print: %v", err)
			}
			if diff := cmp.Diff(tc.want, buf.String()); diff != "" {
				t.Errorf("Print(%q) (-want +got):\n%s", tc.format, diff)
			}
		})
	}
}

// JSON and YAML carry every field, so that scripts read back exactly the report.
func TestPrintMachineFormatsRoundTrip(t *testing.T) {
	for format, unmarshal := range map[string]func([]byte, any) error{
		"json": json.Unmarshal,
		"yaml": func(b []byte, v any) error { return yaml.Unmarshal(b, v) },
	} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := sampleReport().Print(&buf, format); err != nil {
				t.Fatal(err)
			}
			got := &Report{}
			if err := unmarshal(buf.Bytes(), got); err != nil {
				t.Fatalf("read back %s: %v\n%s", format, err, buf.String())
			}
			if diff := cmp.Diff(sampleReport(), got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrintUnknownFormat(t *testing.T) {
	for _, format := range []string{"wide", "JSON", "yml"} {
		var buf bytes.Buffer
		err := sampleReport().Print(&buf, format)
		if err == nil || !strings.Contains(err.Error(), `"`+format+`"`) || !strings.Contains(err.Error(), "table, json or yaml") {
			t.Errorf("Print(%q) error %v, want one naming the format and the choices", format, err)
		}
		if buf.Len() != 0 {
			t.Errorf("Print(%q) wrote %q before failing", format, buf.String())
		}
	}
}

func newFakeHub(t *testing.T, funcs *interceptor.Funcs, objs ...client.Object) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...)
	if funcs != nil {
		b = b.WithInterceptorFuncs(*funcs)
	}
	return b.Build()
}

func TestCollect(t *testing.T) {
	// The API server keeps times to the second; ages are rounded to the second.
	now := time.Date(2026, 3, 1, 12, 0, 0, 400*int(time.Millisecond), time.UTC)
	at := func(hms string) *metav1.Time {
		t, err := time.Parse(time.DateTime, "2026-03-01 "+hms)
		if err != nil {
			panic(err)
		}
		return &metav1.Time{Time: t}
	}
	cond := func(typ string, status metav1.ConditionStatus, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: "Test", Message: msg, LastTransitionTime: metav1.NewTime(now)}
	}
	objs := []client.Object{
		// Listed out of order: the report follows the API server's (name) order.
		&v1.MeshCluster{
			ObjectMeta: metav1.ObjectMeta{Name: "west"},
			Spec:       v1.MeshClusterSpec{Region: "us-west-2", Zones: []v1.LocalityName{"us-west-2a", "us-west-2b"}, Network: "vpc-2"},
			Status: v1.MeshClusterStatus{
				Conditions: []metav1.Condition{
					cond(v1.ConditionRegistered, metav1.ConditionTrue, ""),
					cond(v1.ConditionConnected, metav1.ConditionFalse, "no heartbeat for 2m3s"),
					cond(v1.ConditionSynced, metav1.ConditionFalse, "not synced"),
					{Type: v1.ConditionCredentialsValid, Status: metav1.ConditionFalse, Reason: v1.ReasonCredentialsExpired,
						LastTransitionTime: metav1.NewTime(now)},
					{Type: v1.ConditionPublishedDataValid, Status: metav1.ConditionFalse, Reason: "AddressOutOfRange",
						Message: "200 refused for AddressOutOfRange, e.g. k: endpoint 192.0.2.10 is outside 10.250.0.0/16", LastTransitionTime: metav1.NewTime(now)},
				},
				CredentialsExpiry: at("11:00:00"),
				LastHeartbeatTime: at("11:57:57"), // 2m3.4s ago
				ExportedServices:  2, ExportedEndpoints: 5,
			},
		},
		// Never heard from: every condition unknown, no heartbeat.
		&v1.MeshCluster{
			ObjectMeta: metav1.ObjectMeta{Name: "east"},
			Spec:       v1.MeshClusterSpec{Region: "us-east-1", Zones: []v1.LocalityName{"us-east-1a"}, Network: "default"},
		},
		// Connected: its condition's message is not shown.
		&v1.MeshCluster{
			ObjectMeta: metav1.ObjectMeta{Name: "north"},
			Spec:       v1.MeshClusterSpec{Region: "eu-north-1", Zones: []v1.LocalityName{"eu-north-1a"}, Network: "default"},
			Status: v1.MeshClusterStatus{
				Conditions: []metav1.Condition{
					cond(v1.ConditionRegistered, metav1.ConditionTrue, ""),
					cond(v1.ConditionConnected, metav1.ConditionTrue, "heartbeat fresh"),
					cond(v1.ConditionSynced, metav1.ConditionTrue, ""),
					{Type: v1.ConditionCredentialsValid, Status: metav1.ConditionTrue, Reason: v1.ReasonCredentialsValid,
						LastTransitionTime: metav1.NewTime(now)},
					{Type: v1.ConditionPublishedDataValid, Status: metav1.ConditionTrue, Reason: v1.ReasonPublishedDataValid,
						Message: "fine", LastTransitionTime: metav1.NewTime(now)},
				},
				CredentialsExpiry: &metav1.Time{Time: now.Add(19*24*time.Hour + 4*time.Hour + 30*time.Minute)},
				LastHeartbeatTime: at("11:59:58"), // 2.4s ago
				ExportedServices:  1, ExportedEndpoints: 1,
			},
		},
		&v1.GlobalService{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "list"},
			Status: v1.GlobalServiceStatus{Hostname: "list.shop.global", Providers: "north", Conditions: []metav1.Condition{
				{Type: v1.ConditionHostnameConflict, Status: metav1.ConditionTrue, Reason: v1.ReasonHostnameInUse,
					Message: "hostname list.shop.global belongs to GlobalService shop/older", LastTransitionTime: metav1.NewTime(now)},
			}},
		},
		&v1.GlobalService{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
			Spec:       v1.GlobalServiceSpec{FailoverPolicyRef: &v1.LocalObjectReference{Name: "eu-first"}},
			Status: v1.GlobalServiceStatus{Hostname: "cart.shop.global", Providers: "all", ReadyEndpoints: 7,
				Clusters: []v1.ClusterEndpoints{{Cluster: "west"}, {Cluster: "north"}}},
		},
	}
	hub := newFakeHub(t, nil, objs...)

	wantClusters := []ClusterRow{
		{Name: "east", Region: "us-east-1", Zones: "us-east-1a", Network: "default",
			Registered: "Unknown", Connected: "Unknown", Synced: "Unknown", ViewInSync: "Unknown", Published: "Unknown", HeartbeatAge: "never", Credentials: "Unknown"},
		{Name: "north", Region: "eu-north-1", Zones: "eu-north-1a", Network: "default",
			Registered: "True", Connected: "True", Synced: "True", ViewInSync: "Unknown", Published: "Valid", HeartbeatAge: "2s", Services: 1, Endpoints: 1,
			Credentials: "Valid 19d4h", CredentialsExpiry: ptrTime(now.Add(19*24*time.Hour + 4*time.Hour + 30*time.Minute).Truncate(time.Second))},
		{Name: "west", Region: "us-west-2", Zones: "us-west-2a,us-west-2b", Network: "vpc-2",
			Registered: "True", Connected: "False", Synced: "False", ViewInSync: "Unknown", HeartbeatAge: "2m3s", Services: 2, Endpoints: 5,
			Published: "AddressOutOfRange", Refused: "200 refused for AddressOutOfRange, e.g. k: endpoint 192.0.2.10 is outside 10.250.0.0/16",
			Credentials: "Expired", CredentialsExpiry: ptrTime(at("11:00:00").Time),
			Message: "no heartbeat for 2m3s"},
	}
	for name, tc := range map[string]struct {
		withServices bool
		want         *Report
	}{
		"clusters": {false, &Report{Clusters: wantClusters}},
		"with services": {true, &Report{Clusters: wantClusters, GlobalServices: []ServiceRow{
			{Namespace: "shop", Name: "cart", Hostname: "cart.shop.global", Providers: "all", Clusters: 2, Ready: 7, Policy: "eu-first"},
			{Namespace: "shop", Name: "list", Hostname: "list.shop.global", Providers: "north",
				HostnameConflict: "hostname list.shop.global belongs to GlobalService shop/older"},
		}}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Collect(context.Background(), hub, now, tc.withServices)
			if err != nil {
				t.Fatalf("Collect: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Collect (-want +got):\n%s", diff)
			}
		})
	}
}

// An empty federation is an empty list, not null, so that `-o json` reads the same
// before and after the first registration.
func TestCollectEmpty(t *testing.T) {
	got, err := Collect(context.Background(), newFakeHub(t, nil), time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := got.Print(&buf, "json"); err != nil {
		t.Fatal(err)
	}
	if buf.String() != emptyJSON {
		t.Errorf("empty federation as JSON:\n%s\nwant:\n%s", buf.String(), emptyJSON)
	}
}

func TestCollectListErrors(t *testing.T) {
	boom := errors.New("boom")
	for name, tc := range map[string]struct {
		fail client.ObjectList
		want string
	}{
		"clusters": {&v1.MeshClusterList{}, "list MeshClusters"},
		"services": {&v1.GlobalServiceList{}, "list GlobalServices"},
	} {
		t.Run(name, func(t *testing.T) {
			funcs := &interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				if _, same := list.(*v1.MeshClusterList); same == isClusterList(tc.fail) {
					return boom
				}
				return c.List(ctx, list, opts...)
			}}
			_, err := Collect(context.Background(), newFakeHub(t, funcs), time.Now(), true)
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Collect error %v, want %q wrapping the list error", err, tc.want)
			}
		})
	}
}

func isClusterList(l client.ObjectList) bool {
	_, ok := l.(*v1.MeshClusterList)
	return ok
}

// A service that leaves a cluster out says which and why, under the services.
func TestPrintExcluded(t *testing.T) {
	r := sampleReport()
	r.GlobalServices[0].Excluded = []v1.ExcludedCluster{{Cluster: "beta", Port: 8080, Reason: "PortNotFound",
		Message: `Service shop/cart has no port named "http"`}}
	var buf bytes.Buffer
	if err := r.Print(&buf, "table"); err != nil {
		t.Fatal(err)
	}
	want := "shop/cart  beta     8080  PortNotFound  Service shop/cart has no port named \"http\""
	if !strings.Contains(buf.String(), "EXCLUDED") || !strings.Contains(buf.String(), want) {
		t.Fatalf("table lacks the excluded cluster:\n%s", buf.String())
	}
}

// A cluster whose data the hub refuses, and a service not served for its hostname,
// each say so on a line of their own.
func TestPrintRefusedAndConflicts(t *testing.T) {
	r := sampleReport()
	r.Clusters[1].Published, r.Clusters[1].Refused = "UndeclaredZone", `3 refused for UndeclaredZone, e.g. k: zone "evil-zone-9"`
	r.GlobalServices[1].HostnameConflict = "hostname list.shop.global belongs to GlobalService shop/older"
	var buf bytes.Buffer
	if err := r.Print(&buf, "table"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"REFUSED         REASON          MESSAGE",
		`west-long-name  UndeclaredZone  3 refused for UndeclaredZone, e.g. k: zone "evil-zone-9"`,
		"HOSTNAME CONFLICT  HOSTNAME          MESSAGE",
		"shop/list          list.shop.global  hostname list.shop.global belongs to GlobalService shop/older",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func ptrTime(t time.Time) *time.Time { return &t }

// Policies are listed with what each cluster's proxies did with their current
// generation; the clusters that did not take it are listed with the message.
func TestCollectAndPrintPolicies(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	tp := &v1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart", Generation: 2},
		Spec: v1.TrafficPolicySpec{GlobalService: "cart"},
		Status: v1.PolicyStatus{ObservedGeneration: 2, Conditions: []metav1.Condition{
			{Type: v1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: v1.ReasonAccepted, ObservedGeneration: 2, LastTransitionTime: now},
			{Type: v1.ConditionProgrammed, Status: metav1.ConditionFalse, Reason: v1.ReasonRefused, ObservedGeneration: 2, LastTransitionTime: now},
		}, Clusters: []v1.ClusterProgrammed{
			{Cluster: "alpha", Generation: 2, Programmed: true},
			{Cluster: "beta", Generation: 2, Message: "refused by proxy web-1 (us-east/us-east-1c): max_ejection_percent = 101"},
			{Cluster: "gamma", Generation: 1, Message: "the cluster's proxies use generation 1"},
		}}}
	ap := &v1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "posture", Generation: 1}}
	r, err := Collect(context.Background(), newFakeHub(t, nil, tp, ap), now.Time, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Policies) != 2 || r.Policies[0].Programmed != "Refused" || r.Policies[1].Programmed != "Unknown" {
		t.Fatalf("policies = %+v", r.Policies)
	}
	var buf bytes.Buffer
	if err := r.Print(&buf, "table"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"POLICY        KIND                 SERVICE      GEN  ACCEPTED  PROGRAMMED  CLUSTERS",
		"shop/posture  AuthorizationPolicy  (namespace)  1    Unknown   Unknown     -",
		"shop/cart     TrafficPolicy        cart         2    Accepted  Refused     alpha ok, beta refused, gamma g1",
		"shop/cart       beta     2    refused by proxy web-1 (us-east/us-east-1c): max_ejection_percent = 101",
		"shop/cart       gamma    1    the cluster's proxies use generation 1",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}
