package v1alpha1_test

import (
	"context"
	"maps"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

func newClient(t *testing.T, cp *localkube.ControlPlane) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func validCluster(name string) *v1.MeshCluster {
	return &v1.MeshCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.MeshClusterSpec{
			Region:        "eu-west",
			Zones:         []v1.LocalityName{"eu-west-1a", "eu-west-1b"},
			Gateways:      []v1.GatewayAddress{{Address: "192.0.2.10"}, {Address: "gw.example.com", Port: 443}},
			AddressRanges: []v1.CIDR{"10.244.0.0/16", "fd00:10:244::/56"},
		},
	}
}

func validService(name string) *v1.GlobalService {
	return &v1.GlobalService{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.GlobalServiceSpec{
			Ports:             []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}, {Port: 9090}},
			Clusters:          []v1.ClusterName{"a", "b"},
			FailoverPolicyRef: &v1.LocalObjectReference{Name: "prefer-eu"},
		},
	}
}

func validPolicy(name string) *v1.FailoverPolicy {
	return &v1.FailoverPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.FailoverPolicySpec{
			Failover: []v1.FailoverRule{
				{From: v1.LocalitySelector{Region: "eu-west"}, To: []v1.LocalitySelector{{Region: "eu-central"}, {Cluster: "us-1"}}},
				{From: v1.LocalitySelector{Cluster: "us-1"}, To: []v1.LocalitySelector{{Region: "eu-west"}}},
			},
		},
	}
}

// hostname is a valid DNS name of n characters, in labels of at most 63.
func hostname(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strings.Repeat("h", min(63, n-b.Len())))
	}
	return b.String()
}

func duration(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// TestValidation starts three real control planes at once, installs the CRDs in each,
// and checks that valid objects of every kind are accepted (with their defaults) and
// that invalid ones are rejected with a message naming the field and the rule.
func TestValidation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cps := localkube.ForTest(t, "alpha", "beta", "gamma")

	for _, cp := range cps {
		c := newClient(t, cp)
		// The longest hostname whose server name outbound_.65535_._.<hostname> fits
		// 255 bytes (xdsnames.SNI).
		longest := validService("longest")
		longest.Spec.Hostname = hostname(236)
		longest.Spec.Ports = []v1.GlobalServicePort{{Port: 65535}}
		if n := len(xdsnames.SNI(longest.Spec.Hostname, 65535)); n != 255 {
			t.Fatalf("the CRD's hostname limit disagrees with xdsnames.SNI: its longest server name has %d bytes, want 255", n)
		}
		nsDefault := &v1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default-deny", Namespace: "default"},
			Spec: v1.AuthorizationPolicySpec{DefaultAction: v1.AuthorizationDeny}}
		for _, obj := range []client.Object{validCluster("a"), validService("echo"), validPolicy("prefer-eu"), longest,
			validTrafficPolicy("cart"), validAuthorizationPolicy("frontend-only"), nsDefault} {
			if err := c.Create(ctx, obj); err != nil {
				t.Fatalf("%s: create valid %T: %v", cp.Name, obj, err)
			}
		}
	}

	c := newClient(t, cps[0])
	t.Run("defaults", func(t *testing.T) {
		mc := &v1.MeshCluster{}
		if err := c.Get(ctx, client.ObjectKey{Name: "a"}, mc); err != nil {
			t.Fatal(err)
		}
		if mc.Spec.Network != v1.DefaultNetwork || mc.Spec.Gateways[0].Port != v1.DefaultGatewayPort {
			t.Errorf("MeshCluster defaults: network %q, gateway port %d", mc.Spec.Network, mc.Spec.Gateways[0].Port)
		}
		wantLimits := v1.PublishLimits{MaxServices: v1.DefaultMaxServices, MaxEndpointsPerService: v1.DefaultMaxEndpointsPerService,
			MaxValueBytes: v1.DefaultMaxValueBytes}
		if mc.Spec.Limits != wantLimits {
			t.Errorf("MeshCluster default limits: %+v, want %+v", mc.Spec.Limits, wantLimits)
		}
		gs := &v1.GlobalService{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "echo"}, gs); err != nil {
			t.Fatal(err)
		}
		if gs.Spec.Ports[1].Protocol != v1.ProtocolTCP {
			t.Errorf("GlobalService default protocol: %q", gs.Spec.Ports[1].Protocol)
		}
		fp := &v1.FailoverPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "prefer-eu"}, fp); err != nil {
			t.Fatal(err)
		}
		s := fp.Spec
		if s.LocalityPreference != v1.PreferZone || !ptr.Deref(s.FallbackToAny, false) || ptr.Deref(s.MinHealthyPercent, 0) != 70 ||
			s.FailbackHold.Duration != 30*time.Second || s.StaleCluster.DemoteAfter.Duration != 30*time.Second ||
			s.StaleCluster.DropAfter.Duration != 10*time.Minute {
			t.Errorf("FailoverPolicy defaults: %+v", s)
		}
		tp := &v1.TrafficPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "cart"}, tp); err != nil {
			t.Fatal(err)
		}
		checkPolicyDefaults(t, tp)
	})

	cases := map[string]struct {
		obj  client.Object
		want []string // substrings of the API server's error
	}{
		"cluster name not a DNS label": {
			obj:  validCluster("bad.name"),
			want: []string{"metadata.name must be a DNS-1123 label"},
		},
		"cluster without zones": {
			obj:  func() client.Object { o := validCluster("nozones"); o.Spec.Zones = nil; return o }(),
			want: []string{"spec.zones", "Required value"},
		},
		"cluster gateway repeated": {
			obj: func() client.Object {
				o := validCluster("dupgw")
				o.Spec.Gateways = append(o.Spec.Gateways, v1.GatewayAddress{Address: "192.0.2.10", Port: 15443})
				return o
			}(),
			want: []string{"spec.gateways", "gateways must not repeat an address and port"},
		},
		"cluster gateway address malformed": {
			obj: func() client.Object {
				o := validCluster("badgw")
				o.Spec.Gateways = []v1.GatewayAddress{{Address: "Not_A_Host"}}
				return o
			}(),
			want: []string{"spec.gateways[0].address", "address must be an IP address or a lower-case DNS name"},
		},
		"cluster zone malformed": {
			obj: func() client.Object {
				o := validCluster("badzone")
				o.Spec.Zones = []v1.LocalityName{"Zone A"}
				return o
			}(),
			want: []string{"spec.zones[0]", "should match"},
		},
		"cluster address range with host bits": {
			obj: func() client.Object {
				o := validCluster("hostbits")
				o.Spec.AddressRanges = []v1.CIDR{"10.244.1.7/16"}
				return o
			}(),
			want: []string{"spec.addressRanges[0]", "CIDR notation with no host bits set"},
		},
		"cluster address range not a range": {
			obj: func() client.Object {
				o := validCluster("norange")
				o.Spec.AddressRanges = []v1.CIDR{"10.244.0.0"}
				return o
			}(),
			want: []string{"spec.addressRanges[0]", "CIDR notation"},
		},
		"cluster value limit below 1 KiB": {
			obj:  func() client.Object { o := validCluster("tinyvalues"); o.Spec.Limits.MaxValueBytes = 100; return o }(),
			want: []string{"spec.limits.maxValueBytes", "greater than or equal to 1024"},
		},
		"service hostname of 240 characters": {
			obj: func() client.Object {
				o := validService("longname")
				o.Spec.Hostname = hostname(240)
				return o
			}(),
			want: []string{"spec.hostname", "hostname is too long", "outbound_.<port>_._.<hostname>", "255 bytes"},
		},
		"service hostname one over for its port": {
			obj: func() client.Object {
				o := validService("oneover")
				o.Spec.Hostname = hostname(237)
				o.Spec.Ports = []v1.GlobalServicePort{{Port: 80}, {Port: 65535}}
				return o
			}(),
			want: []string{"spec.hostname", "hostname is too long"},
		},
		"service hostname label over 63": {
			obj: func() client.Object {
				o := validService("longlabel")
				o.Spec.Hostname = strings.Repeat("a", 64) + ".example"
				return o
			}(),
			want: []string{"spec.hostname", "should match"},
		},
		"service with both service and selector": {
			obj: func() client.Object {
				o := validService("both")
				o.Spec.Service = &v1.ServiceReference{Name: "echo"}
				o.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "echo"}}
				return o
			}(),
			want: []string{"spec", "set at most one of service and selector"},
		},
		"service port names repeated": {
			obj: func() client.Object {
				o := validService("dupname")
				o.Spec.Ports = []v1.GlobalServicePort{{Name: "web", Port: 80}, {Name: "web", Port: 81}}
				return o
			}(),
			want: []string{"spec.ports", "port names must be unique"},
		},
		"service port repeated": {
			obj: func() client.Object {
				o := validService("dupport")
				o.Spec.Ports = []v1.GlobalServicePort{{Name: "a", Port: 80}, {Name: "b", Port: 80}}
				return o
			}(),
			want: []string{"spec.ports[1]", "Duplicate value"},
		},
		"service without ports": {
			obj:  func() client.Object { o := validService("noports"); o.Spec.Ports = nil; return o }(),
			want: []string{"spec.ports", "Required value"},
		},
		"service name not a DNS-1035 label": {
			obj:  validService("9lives"),
			want: []string{"metadata.name must be a DNS-1035 label"},
		},
		"policy with failover and distribute": {
			obj: func() client.Object {
				o := validPolicy("both")
				o.Spec.Distribute = []v1.DistributeRule{{From: "eu-west", To: []v1.WeightedLocality{{Locality: "eu-west", Weight: 100}}}}
				return o
			}(),
			want: []string{"spec", "set at most one of failover and distribute"},
		},
		"policy failover source repeated": {
			obj: func() client.Object {
				o := validPolicy("dupfrom")
				o.Spec.Failover[1].From = v1.LocalitySelector{Region: "eu-west"}
				return o
			}(),
			want: []string{"spec.failover", "each failover source (from) may appear only once"},
		},
		"policy source with region and cluster": {
			obj: func() client.Object {
				o := validPolicy("fromboth")
				o.Spec.Failover[0].From.Cluster = "eu-1"
				return o
			}(),
			want: []string{"spec.failover[0].from", "set exactly one of region and cluster"},
		},
		"policy target with neither region nor cluster": {
			obj: func() client.Object {
				o := validPolicy("toempty")
				o.Spec.Failover[0].To = []v1.LocalitySelector{{}}
				return o
			}(),
			want: []string{"spec.failover[0].to[0]", "set exactly one of region and cluster"},
		},
		"policy target is its source": {
			obj: func() client.Object {
				o := validPolicy("toself")
				o.Spec.Failover[0].To = append(o.Spec.Failover[0].To, v1.LocalitySelector{Region: "eu-west"})
				return o
			}(),
			want: []string{"spec.failover[0]", "must not list its source (from) among its targets (to)"},
		},
		"policy targets repeated": {
			obj: func() client.Object {
				o := validPolicy("duptarget")
				o.Spec.Failover[0].To = append(o.Spec.Failover[0].To, v1.LocalitySelector{Cluster: "us-1"})
				return o
			}(),
			want: []string{"spec.failover[0].to", "failover targets (to) must not repeat"},
		},
		"policy distribute weights not 100": {
			obj: &v1.FailoverPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "weights", Namespace: "default"},
				Spec: v1.FailoverPolicySpec{Distribute: []v1.DistributeRule{{
					From: "eu-west/*", To: []v1.WeightedLocality{{Locality: "eu-west", Weight: 60}, {Locality: "us-east", Weight: 30}},
				}}},
			},
			want: []string{"spec.distribute[0]", "distribute weights (to[].weight) must sum to 100"},
		},
		"policy distribute destination repeated": {
			obj: &v1.FailoverPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "dupdest", Namespace: "default"},
				Spec: v1.FailoverPolicySpec{Distribute: []v1.DistributeRule{{
					From: "eu-west", To: []v1.WeightedLocality{{Locality: "us-east", Weight: 50}, {Locality: "us-east", Weight: 50}},
				}}},
			},
			want: []string{"spec.distribute[0].to", "distribute destinations (to[].locality) must not repeat"},
		},
		"policy distribute source repeated": {
			obj: &v1.FailoverPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "dupdistfrom", Namespace: "default"},
				Spec: v1.FailoverPolicySpec{Distribute: []v1.DistributeRule{
					{From: "eu-west", To: []v1.WeightedLocality{{Locality: "eu-west", Weight: 100}}},
					{From: "eu-west", To: []v1.WeightedLocality{{Locality: "us-east", Weight: 100}}},
				}},
			},
			want: []string{"spec.distribute", "each distribute source (from) may appear only once"},
		},
		"policy distribute locality malformed": {
			obj: &v1.FailoverPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "badlocality", Namespace: "default"},
				Spec: v1.FailoverPolicySpec{Distribute: []v1.DistributeRule{
					{From: "EU West", To: []v1.WeightedLocality{{Locality: "eu-west", Weight: 100}}},
				}},
			},
			want: []string{"spec.distribute[0].from", "should match"},
		},
		"policy failback hold too long": {
			obj: func() client.Object {
				o := validPolicy("longhold")
				o.Spec.FailbackHold = duration(2 * time.Hour)
				return o
			}(),
			want: []string{"spec.failbackHold", "failbackHold must be at most 1h"},
		},
		"policy demote too soon": {
			obj: func() client.Object {
				o := validPolicy("fastdemote")
				o.Spec.StaleCluster.DemoteAfter = duration(500 * time.Millisecond)
				return o
			}(),
			want: []string{"spec.staleCluster.demoteAfter", "demoteAfter must be between 1s and 1h"},
		},
		"policy drop too late": {
			obj: func() client.Object {
				o := validPolicy("latedrop")
				o.Spec.StaleCluster.DropAfter = duration(1000 * time.Hour)
				return o
			}(),
			want: []string{"spec.staleCluster.dropAfter", "dropAfter must be between 10s and 720h"},
		},
		"policy drop before demote": {
			obj: func() client.Object {
				o := validPolicy("dropfirst")
				o.Spec.StaleCluster = v1.StaleClusterPolicy{DemoteAfter: duration(5 * time.Minute), DropAfter: duration(time.Minute)}
				return o
			}(),
			want: []string{"spec.staleCluster", "staleCluster.dropAfter must be longer than staleCluster.demoteAfter"},
		},
		"policy healthy percent over 100": {
			obj:  func() client.Object { o := validPolicy("pct"); o.Spec.MinHealthyPercent = ptr.To[int32](150); return o }(),
			want: []string{"spec.minHealthyPercent", "less than or equal to 100"},
		},
	}
	maps.Copy(cases, policyCases())
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := c.Create(ctx, tc.obj)
			if err == nil {
				t.Fatalf("created an invalid object; want an error containing %q", tc.want)
			}
			t.Logf("rejected: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}

	t.Run("cluster region is immutable", func(t *testing.T) {
		mc := &v1.MeshCluster{}
		if err := c.Get(ctx, client.ObjectKey{Name: "a"}, mc); err != nil {
			t.Fatal(err)
		}
		mc.Spec.Region = "us-east"
		err := c.Update(ctx, mc)
		if err == nil || !strings.Contains(err.Error(), "spec.region") || !strings.Contains(err.Error(), "region is immutable") {
			t.Fatalf("update of region: got %v, want an immutability error on spec.region", err)
		}
	})

	t.Run("printer columns", func(t *testing.T) {
		dir, err := localkube.Assets()
		if err != nil {
			t.Fatal(err)
		}
		for resource, columns := range map[string]string{
			"meshclusters":          "NAME REGION NETWORK CONNECTED SYNCED PUBLISHED SERVICES ENDPOINTS HEARTBEAT AGE",
			"globalservices":        "NAME HOSTNAME PORTS PROVIDERS POLICY READY ACCEPTED AGE",
			"failoverpolicies":      "NAME PREFERENCE FAILBACK DEMOTE DROP ACCEPTED AGE",
			"trafficpolicies":       "NAME SERVICE LB ROUTES ACCEPTED PROGRAMMED AGE",
			"authorizationpolicies": "NAME SERVICE ACTION DEFAULT ACCEPTED PROGRAMMED AGE",
		} {
			out, err := exec.CommandContext(ctx, filepath.Join(dir, "kubectl"), "--kubeconfig", cps[0].Kubeconfig,
				"get", resource, "-A").CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl get %s: %v\n%s", resource, err, out)
			}
			header := strings.Join(strings.Fields(strings.SplitN(string(out), "\n", 2)[0]), " ")
			if resource != "meshclusters" {
				columns = "NAMESPACE " + columns
			}
			if header != columns {
				t.Errorf("kubectl get %s columns = %q, want %q", resource, header, columns)
			}
		}
	})
}
