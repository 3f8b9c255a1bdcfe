package model

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func dur(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }

// Valid records of every kind, and the keys they belong at. Each test builds its own
// copy, so that a table may change one field without touching the others.
func validInfo() *ClusterInfo {
	return &ClusterInfo{
		Name: "east-1", Region: "us-east", Zones: []string{"us-east-1a", "us-east-1b"}, Network: "corp",
		Gateways: []Gateway{{Address: "203.0.113.10", Port: 15443}},
		Labels:   map[string]string{"env": "prod"},
	}
}

func validHeartbeat() *Heartbeat { return &Heartbeat{Time: t0, TTL: 10, Agent: "agent-7f9c"} }

func validSynced() *Synced { return &Synced{SyncedAt: t0} }

func validEndpoints() *ServiceEndpoints {
	return &ServiceEndpoints{
		Namespace: "shop", Name: "cart", Labels: map[string]string{"app": "cart"},
		Ports: []ServicePort{{Name: "http", Port: 80, Protocol: "TCP", AppProtocol: "http"}},
		Endpoints: []Endpoint{
			{Address: "10.0.0.1", Zone: "us-east-1a", TargetRef: "Pod/cart-1", Ready: true, Serving: true,
				Ports: []EndpointPort{{Name: "http", Port: 8080}}},
			{Address: "2001:db8::2", Zone: "us-east-1b", Terminating: true, Ports: []EndpointPort{{Name: "http", Port: 8080}}},
		},
		ExportedBy: []string{"GlobalService"},
	}
}

func validGlobal() *GlobalService {
	return &GlobalService{
		Namespace: "shop", Name: "cart", Hostname: "cart.shop.svc.clusterset.local",
		Service:  &ServiceRef{Namespace: "shop", Name: "cart"},
		Ports:    []GlobalPort{{Name: "http", Port: 80, Protocol: "HTTP"}},
		Clusters: []string{"east-1"},
		Policy:   "cart-failover",
	}
}

func validSelectorGlobal() *GlobalService {
	return &GlobalService{
		Namespace: "shop", Name: "frontends", Hostname: "web.example.internal",
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "front"}},
		Ports:    []GlobalPort{{Port: 443, Protocol: "TLS"}},
	}
}

func validPolicy() *Policy {
	return &Policy{
		Namespace: "shop", Name: "cart-failover", LocalityPreference: "Region",
		Failover:          []FailoverRule{{From: Locality{Region: "us-east"}, To: []Locality{{Cluster: "west-1"}, {Region: "eu"}}}},
		FallbackToAny:     true,
		MinHealthyPercent: 70,
		FailbackHold:      dur(30 * time.Second),
		DemoteAfter:       dur(30 * time.Second),
		DropAfter:         dur(10 * time.Minute),
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecode(t *testing.T) {
	tests := map[string]struct {
		key   string
		value string
		want  Record
	}{
		"cluster info": {
			key:  keyspace.ClusterInfo("east-1"),
			want: validInfo(),
		},
		"heartbeat": {
			key:  keyspace.ClusterHeartbeat("east-1"),
			want: validHeartbeat(),
		},
		"synced": {
			key:  keyspace.ClusterSynced("east-1"),
			want: validSynced(),
		},
		"service endpoints": {
			key:  keyspace.ServiceEndpoints("east-1", "shop", "cart"),
			want: validEndpoints(),
		},
		"global service naming a service": {
			key:  keyspace.GlobalService("shop", "cart"),
			want: validGlobal(),
		},
		"global service with a selector": {
			key:  keyspace.GlobalService("shop", "frontends"),
			want: validSelectorGlobal(),
		},
		"policy": {
			key:  keyspace.Policy("shop", "cart-failover"),
			want: validPolicy(),
		},
		"policy with distribute": {
			key: keyspace.Policy("shop", "split"),
			want: &Policy{
				Namespace: "shop", Name: "split", LocalityPreference: "None",
				Distribute:  []DistributeRule{{From: "us-east/*", To: []WeightedLocality{{Locality: "us-east/*", Weight: 80}, {Locality: "us-west", Weight: 20}}}},
				DemoteAfter: dur(time.Second), DropAfter: dur(time.Hour),
			},
		},
		// A service record for a cluster the hub has not registered is still well-formed:
		// agreement is with the key, not with other records.
		"service endpoints of another cluster": {
			key:  keyspace.ServiceEndpoints("west-1", "shop", "cart"),
			want: validEndpoints(),
		},
		"unknown fields are ignored": {
			key:   keyspace.ClusterHeartbeat("east-1"),
			value: `{"time":"2026-01-02T03:04:05Z","ttlSeconds":10,"agent":"agent-7f9c","renewals":3,"future":{"a":[1,2]}}`,
			want:  validHeartbeat(),
		},
		"unknown fields in nested values are ignored": {
			key: keyspace.ServiceEndpoints("east-1", "shop", "cart"),
			value: `{"namespace":"shop","name":"cart","ports":[{"port":80,"weight":3}],` +
				`"endpoints":[{"address":"10.0.0.1","ready":true,"serving":true,"ports":[],"hints":{"forZones":["a"]}}],"topology":"x"}`,
			want: &ServiceEndpoints{Namespace: "shop", Name: "cart", Ports: []ServicePort{{Port: 80}},
				Endpoints: []Endpoint{{Address: "10.0.0.1", Ready: true, Serving: true, Ports: []EndpointPort{}}}},
		},
		"unknown fields in cluster info are ignored": {
			key:   keyspace.ClusterInfo("east-1"),
			value: `{"name":"east-1","region":"us-east","zones":["a"],"network":"default","intermediateCA":"..."}`,
			want:  &ClusterInfo{Name: "east-1", Region: "us-east", Zones: []string{"a"}, Network: "default"},
		},
		"synced marker of an older agent without a time": {
			key:   keyspace.ClusterSynced("east-1"),
			value: `{}`,
			want:  &Synced{},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			value := []byte(tc.value)
			if tc.value == "" {
				value = mustJSON(t, tc.want)
			}
			got, err := Decode(tc.key, value)
			if err != nil {
				t.Fatalf("Decode(%s): %v", tc.key, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("Decode(%s) mismatch (-want +got):\n%s", tc.key, diff)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	info := keyspace.ClusterInfo("east-1")
	svc := keyspace.ServiceEndpoints("east-1", "shop", "cart")
	gs := keyspace.GlobalService("shop", "cart")
	pol := keyspace.Policy("shop", "cart-failover")
	noRegion := validInfo()
	noRegion.Region = ""
	tests := map[string]struct {
		key   string
		value string
		// unknownKey: the error is the keyspace's, not a value error.
		unknownKey bool
		// contains is a fragment the error must name, so that the operator can tell
		// what was wrong and where.
		contains string
	}{
		// Keys.
		"foreign key":                {key: "/registry/pods/default/x", value: `{}`, unknownKey: true},
		"other version":              {key: "/meshfed/v2/clusters/east-1/info", value: `{}`, unknownKey: true},
		"malformed key segment":      {key: "/meshfed/v1/clusters/East/info", value: `{}`, unknownKey: true},
		"cluster prefix only":        {key: keyspace.ClusterPrefix("east-1"), value: `{}`, unknownKey: true},
		"trust bundle without roots": {key: keyspace.TrustBundle(), value: `{}`, contains: "trust bundle needs"},
		"intermediate without chain": {key: keyspace.ClusterIntermediate("east-1"), value: `{"csrDigest":"x"}`, contains: "intermediate needs"},
		"csr without PEM":            {key: keyspace.ClusterIntermediateCSR("east-1"), value: `{"trustDomain":"t","csr":"x"}`, contains: "intermediate CSR needs"},
		"etcd csr without PEM":       {key: keyspace.ClusterEtcdCSR("east-1"), value: `{"csr":"x"}`, contains: "etcd CSR needs"},
		"etcd cert without expiry":   {key: keyspace.ClusterEtcdCert("east-1"), value: `{"cert":"CERTIFICATE","csrDigest":"x"}`, contains: "etcd certificate needs"},
		"empty key and empty body":   {key: "", value: "", unknownKey: true},

		// Malformed JSON, for every kind.
		"truncated cluster info":       {key: info, value: `{"name":"east-1"`, contains: info},
		"heartbeat not an object":      {key: keyspace.ClusterHeartbeat("east-1"), value: `[1,2]`},
		"synced not JSON":              {key: keyspace.ClusterSynced("east-1"), value: `synced`},
		"synced time malformed":        {key: keyspace.ClusterSynced("east-1"), value: `{"syncedAt":"yesterday"}`},
		"service endpoints empty body": {key: svc, value: ``},
		"global service wrong type":    {key: gs, value: `{"namespace":"shop","name":"cart","ports":"80"}`},
		"policy duration malformed":    {key: pol, value: `{"namespace":"shop","name":"cart-failover","demoteAfter":"soon"}`},
		"heartbeat ttl as string":      {key: keyspace.ClusterHeartbeat("east-1"), value: `{"ttlSeconds":"10"}`},

		// Well-formed JSON that fails Validate.
		"cluster info without region":    {key: info, value: string(mustJSON(t, noRegion)), contains: "region"},
		"heartbeat null":                 {key: keyspace.ClusterHeartbeat("east-1"), value: `null`, contains: "ttlSeconds"},
		"heartbeat without ttl":          {key: keyspace.ClusterHeartbeat("east-1"), value: `{"time":"2026-01-02T03:04:05Z","agent":"a"}`, contains: "ttlSeconds"},
		"service endpoint not an IP":     {key: svc, value: badEndpointAddress(t), contains: "not an IP"},
		"global service without ports":   {key: gs, value: globalWithoutPorts(t), contains: "no ports"},
		"policy with unknown preference": {key: pol, value: policyWithPreference(t, "Nearest"), contains: "Nearest"},
		"empty object as a policy":       {key: pol, value: `{}`},

		// Values that disagree with their key.
		"cluster info of another cluster": {key: keyspace.ClusterInfo("west-1"), value: string(mustJSON(t, validInfo())), contains: `"east-1"`},
		"service endpoints with another name": {
			key: keyspace.ServiceEndpoints("east-1", "shop", "checkout"), value: string(mustJSON(t, validEndpoints())), contains: "shop/cart",
		},
		"service endpoints in another namespace": {
			key: keyspace.ServiceEndpoints("east-1", "store", "cart"), value: string(mustJSON(t, validEndpoints())), contains: "shop/cart",
		},
		"global service with another name": {key: keyspace.GlobalService("shop", "checkout"), value: string(mustJSON(t, validGlobal()))},
		"policy in another namespace":      {key: keyspace.Policy("store", "cart-failover"), value: string(mustJSON(t, validPolicy()))},
		// A global service stored where a policy belongs fails somewhere on the way,
		// never decodes as a policy.
		"global service at a policy key": {key: keyspace.Policy("shop", "cart"), value: string(mustJSON(t, validGlobal()))},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Decode(tc.key, []byte(tc.value))
			if err == nil {
				t.Fatalf("Decode(%q, %s) = %#v, want an error", tc.key, tc.value, got)
			}
			if got != nil {
				t.Errorf("Decode returned %#v along with error %v", got, err)
			}
			if tc.unknownKey {
				if !errors.Is(err, keyspace.ErrUnknownKey) {
					t.Errorf("error %v does not wrap keyspace.ErrUnknownKey", err)
				}
			} else if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
		})
	}
}

func badEndpointAddress(t *testing.T) string {
	s := validEndpoints()
	s.Endpoints[1].Address = "cart-2.shop.svc"
	return string(mustJSON(t, s))
}

func globalWithoutPorts(t *testing.T) string {
	g := validGlobal()
	g.Ports = nil
	return string(mustJSON(t, g))
}

func policyWithPreference(t *testing.T, pref string) string {
	p := validPolicy()
	p.LocalityPreference = pref
	return string(mustJSON(t, p))
}

// The JSON of every kind is part of the versioned keyspace API: these strings pin
// the field names and formats that other releases read. If this test fails, the
// change breaks compatibility (see the package doc): add fields, never rename them.
func TestEncodeGolden(t *testing.T) {
	tests := map[string]struct {
		rec  Record
		want string
	}{
		"cluster info": {
			rec: validInfo(),
			want: `{"name":"east-1","region":"us-east","zones":["us-east-1a","us-east-1b"],"network":"corp",` +
				`"gateways":[{"address":"203.0.113.10","port":15443}],"labels":{"env":"prod"}}`,
		},
		"cluster info without optional fields": {
			rec:  &ClusterInfo{Name: "east-1", Region: "us-east", Network: "default"},
			want: `{"name":"east-1","region":"us-east","zones":null,"network":"default"}`,
		},
		"heartbeat": {
			rec:  validHeartbeat(),
			want: `{"time":"2026-01-02T03:04:05Z","ttlSeconds":10,"agent":"agent-7f9c"}`,
		},
		"synced": {
			rec:  validSynced(),
			want: `{"syncedAt":"2026-01-02T03:04:05Z"}`,
		},
		"service endpoints": {
			rec: validEndpoints(),
			want: `{"namespace":"shop","name":"cart","labels":{"app":"cart"},` +
				`"ports":[{"name":"http","port":80,"protocol":"TCP","appProtocol":"http"}],` +
				`"endpoints":[` +
				`{"address":"10.0.0.1","zone":"us-east-1a","targetRef":"Pod/cart-1","ready":true,"serving":true,"ports":[{"name":"http","port":8080}]},` +
				`{"address":"2001:db8::2","zone":"us-east-1b","ready":false,"serving":false,"terminating":true,"ports":[{"name":"http","port":8080}]}],` +
				`"exportedBy":["GlobalService"]}`,
		},
		"global service naming a service": {
			rec: validGlobal(),
			want: `{"namespace":"shop","name":"cart","hostname":"cart.shop.svc.clusterset.local",` +
				`"service":{"namespace":"shop","name":"cart"},"ports":[{"name":"http","port":80,"protocol":"HTTP"}],` +
				`"clusters":["east-1"],"policy":"cart-failover"}`,
		},
		"global service with a selector": {
			rec: validSelectorGlobal(),
			want: `{"namespace":"shop","name":"frontends","hostname":"web.example.internal",` +
				`"selector":{"matchLabels":{"tier":"front"}},"ports":[{"port":443,"protocol":"TLS"}]}`,
		},
		"policy": {
			rec: validPolicy(),
			want: `{"namespace":"shop","name":"cart-failover","localityPreference":"Region",` +
				`"failover":[{"from":{"region":"us-east"},"to":[{"cluster":"west-1"},{"region":"eu"}]}],` +
				`"fallbackToAny":true,"minHealthyPercent":70,"failbackHold":"30s","demoteAfter":"30s","dropAfter":"10m0s"}`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Encode(tc.rec)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("Encode =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// Encode and Decode are inverses for every valid record at its own key.
func TestEncodeDecodeRoundTrip(t *testing.T) {
	tests := map[string]struct {
		key string
		rec Record
	}{
		"cluster info":      {keyspace.ClusterInfo("east-1"), validInfo()},
		"heartbeat":         {keyspace.ClusterHeartbeat("east-1"), validHeartbeat()},
		"synced":            {keyspace.ClusterSynced("east-1"), validSynced()},
		"service endpoints": {keyspace.ServiceEndpoints("east-1", "shop", "cart"), validEndpoints()},
		"global service":    {keyspace.GlobalService("shop", "cart"), validGlobal()},
		"selector service":  {keyspace.GlobalService("shop", "frontends"), validSelectorGlobal()},
		"policy":            {keyspace.Policy("shop", "cart-failover"), validPolicy()},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(tc.rec)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(tc.key, b)
			if err != nil {
				t.Fatalf("Decode(Encode(rec)): %v", err)
			}
			if diff := cmp.Diff(tc.rec, got); diff != "" {
				t.Fatalf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Encode refuses to produce a value that Decode would reject.
func TestEncodeRejectsInvalid(t *testing.T) {
	tests := map[string]Record{
		"cluster info without network": &ClusterInfo{Name: "east-1", Region: "us-east"},
		"heartbeat without ttl":        &Heartbeat{Time: t0},
		"endpoints without name":       &ServiceEndpoints{Namespace: "shop"},
		"global without hostname":      &GlobalService{Namespace: "shop", Name: "cart", Service: &ServiceRef{"shop", "cart"}, Ports: []GlobalPort{{Port: 80}}},
		"policy with drop before demote": &Policy{Namespace: "shop", Name: "p", LocalityPreference: "Zone",
			DemoteAfter: dur(time.Minute), DropAfter: dur(time.Second)},
	}
	for name, rec := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(rec)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Encode error = %v, want one wrapping ErrInvalid", err)
			}
			if b != nil {
				t.Fatalf("Encode returned %s along with an error", b)
			}
		})
	}
}

// validateCase is one record and whether Validate must accept it.
type validateCase struct {
	rec   Record
	valid bool
}

func checkValidate(t *testing.T, tests map[string]validateCase) {
	t.Helper()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.rec.Validate()
			switch {
			case tc.valid && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case !tc.valid && err == nil:
				t.Fatalf("Validate accepted %#v", tc.rec)
			case !tc.valid && !errors.Is(err, ErrInvalid):
				t.Fatalf("Validate error %v does not wrap ErrInvalid", err)
			case !tc.valid && !strings.HasPrefix(err.Error(), "model: "):
				t.Fatalf("Validate error %q lacks the package prefix", err)
			}
		})
	}
}

func TestClusterInfoValidate(t *testing.T) {
	info := func(change func(*ClusterInfo)) *ClusterInfo {
		c := validInfo()
		change(c)
		return c
	}
	checkValidate(t, map[string]validateCase{
		"valid":                    {validInfo(), true},
		"minimal":                  {&ClusterInfo{Name: "a", Region: "r", Network: "n"}, true},
		"no zones":                 {info(func(c *ClusterInfo) { c.Zones = nil }), true},
		"gateway DNS name":         {info(func(c *ClusterInfo) { c.Gateways[0].Address = "gw.east.example" }), true},
		"gateway port 1":           {info(func(c *ClusterInfo) { c.Gateways[0].Port = 1 }), true},
		"gateway port 65535":       {info(func(c *ClusterInfo) { c.Gateways[0].Port = 65535 }), true},
		"longest name":             {info(func(c *ClusterInfo) { c.Name = strings.Repeat("a", 63) }), true},
		"empty name":               {info(func(c *ClusterInfo) { c.Name = "" }), false},
		"name too long":            {info(func(c *ClusterInfo) { c.Name = strings.Repeat("a", 64) }), false},
		"upper-case name":          {info(func(c *ClusterInfo) { c.Name = "East-1" }), false},
		"dotted name":              {info(func(c *ClusterInfo) { c.Name = "east.1" }), false},
		"no region":                {info(func(c *ClusterInfo) { c.Region = "" }), false},
		"no network":               {info(func(c *ClusterInfo) { c.Network = "" }), false},
		"gateway without address":  {info(func(c *ClusterInfo) { c.Gateways[0].Address = "" }), false},
		"gateway port 0":           {info(func(c *ClusterInfo) { c.Gateways[0].Port = 0 }), false},
		"gateway port 65536":       {info(func(c *ClusterInfo) { c.Gateways[0].Port = 65536 }), false},
		"gateway port negative":    {info(func(c *ClusterInfo) { c.Gateways[0].Port = -1 }), false},
		"second gateway malformed": {info(func(c *ClusterInfo) { c.Gateways = append(c.Gateways, Gateway{Address: "x"}) }), false},
	})
}

func TestHeartbeatValidate(t *testing.T) {
	checkValidate(t, map[string]validateCase{
		"valid":                  {validHeartbeat(), true},
		"ttl only":               {&Heartbeat{TTL: 1}, true},
		"zero ttl":               {&Heartbeat{Time: t0, Agent: "a"}, false},
		"negative ttl":           {&Heartbeat{Time: t0, TTL: -5, Agent: "a"}, false},
		"zero value":             {&Heartbeat{}, false},
		"large ttl accepted":     {&Heartbeat{TTL: 1 << 40}, true},
		"view report":            {&Heartbeat{TTL: 1, View: &ViewDigest{Revision: 7, Digest: "3/000000000000002a"}}, true},
		"view without revision":  {&Heartbeat{TTL: 1, View: &ViewDigest{Digest: "3/000000000000002a"}}, false},
		"view with a bad digest": {&Heartbeat{TTL: 1, View: &ViewDigest{Revision: 7, Digest: "3/2a"}}, false},
	})
}

func TestSyncedValidate(t *testing.T) {
	checkValidate(t, map[string]validateCase{
		"valid":      {validSynced(), true},
		"zero value": {&Synced{}, true},
	})
}

func TestServiceEndpointsValidate(t *testing.T) {
	svc := func(change func(*ServiceEndpoints)) *ServiceEndpoints {
		s := validEndpoints()
		change(s)
		return s
	}
	checkValidate(t, map[string]validateCase{
		"valid":                     {validEndpoints(), true},
		"no endpoints":              {svc(func(s *ServiceEndpoints) { s.Endpoints = nil }), true},
		"no ports":                  {svc(func(s *ServiceEndpoints) { s.Ports = nil }), true},
		"IPv6 endpoint":             {svc(func(s *ServiceEndpoints) { s.Endpoints[0].Address = "fd00::1" }), true},
		"no namespace":              {svc(func(s *ServiceEndpoints) { s.Namespace = "" }), false},
		"no name":                   {svc(func(s *ServiceEndpoints) { s.Name = "" }), false},
		"service port 0":            {svc(func(s *ServiceEndpoints) { s.Ports[0].Port = 0 }), false},
		"service port 65536":        {svc(func(s *ServiceEndpoints) { s.Ports[0].Port = 65536 }), false},
		"endpoint without address":  {svc(func(s *ServiceEndpoints) { s.Endpoints[0].Address = "" }), false},
		"endpoint host name":        {svc(func(s *ServiceEndpoints) { s.Endpoints[0].Address = "cart-1" }), false},
		"endpoint CIDR":             {svc(func(s *ServiceEndpoints) { s.Endpoints[0].Address = "10.0.0.0/24" }), false},
		"endpoint address and port": {svc(func(s *ServiceEndpoints) { s.Endpoints[0].Address = "10.0.0.1:80" }), false},
		"endpoint port 0":           {svc(func(s *ServiceEndpoints) { s.Endpoints[1].Ports[0].Port = 0 }), false},
		"endpoint port 70000":       {svc(func(s *ServiceEndpoints) { s.Endpoints[1].Ports[0].Port = 70000 }), false},
	})
}

func TestGlobalServiceValidate(t *testing.T) {
	gs := func(base func() *GlobalService, change func(*GlobalService)) *GlobalService {
		g := base()
		change(g)
		return g
	}
	checkValidate(t, map[string]validateCase{
		"naming a service":  {validGlobal(), true},
		"with a selector":   {validSelectorGlobal(), true},
		"service elsewhere": {gs(validGlobal, func(g *GlobalService) { g.Service.Namespace = "backend" }), true},
		"empty selector":    {gs(validSelectorGlobal, func(g *GlobalService) { g.Selector = &metav1.LabelSelector{} }), true},
		"selector with expressions": {gs(validSelectorGlobal, func(g *GlobalService) {
			g.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"front", "edge"}}}}
		}), true},
		"no namespace":                 {gs(validGlobal, func(g *GlobalService) { g.Namespace = "" }), false},
		"no name":                      {gs(validGlobal, func(g *GlobalService) { g.Name = "" }), false},
		"no hostname":                  {gs(validGlobal, func(g *GlobalService) { g.Hostname = "" }), false},
		"neither service nor selector": {gs(validGlobal, func(g *GlobalService) { g.Service = nil }), false},
		"both service and selector": {gs(validGlobal, func(g *GlobalService) {
			g.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
		}), false},
		"selector with unknown operator": {gs(validSelectorGlobal, func(g *GlobalService) {
			g.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "tier", Operator: "Near", Values: []string{"front"}}}}
		}), false},
		"selector In without values": {gs(validSelectorGlobal, func(g *GlobalService) {
			g.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "tier", Operator: metav1.LabelSelectorOpIn}}}
		}), false},
		"selector with invalid label value": {gs(validSelectorGlobal, func(g *GlobalService) {
			g.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "not valid!"}}
		}), false},
		"no ports":           {gs(validGlobal, func(g *GlobalService) { g.Ports = nil }), false},
		"port 0":             {gs(validGlobal, func(g *GlobalService) { g.Ports[0].Port = 0 }), false},
		"port 65536":         {gs(validGlobal, func(g *GlobalService) { g.Ports[0].Port = 65536 }), false},
		"second port 0":      {gs(validGlobal, func(g *GlobalService) { g.Ports = append(g.Ports, GlobalPort{Name: "x"}) }), false},
		"port 65535 is fine": {gs(validGlobal, func(g *GlobalService) { g.Ports[0].Port = 65535 }), true},
	})
}

func TestPolicyValidate(t *testing.T) {
	p := func(change func(*Policy)) *Policy {
		pol := validPolicy()
		change(pol)
		return pol
	}
	split := func(weights ...int32) func(*Policy) {
		return func(pol *Policy) {
			pol.Failover = nil
			rule := DistributeRule{From: "us-east/*"}
			for i, w := range weights {
				rule.To = append(rule.To, WeightedLocality{Locality: string(rune('a'+i)) + "-region", Weight: w})
			}
			pol.Distribute = []DistributeRule{rule}
		}
	}
	checkValidate(t, map[string]validateCase{
		"valid":                   {validPolicy(), true},
		"prefer zone":             {p(func(pol *Policy) { pol.LocalityPreference = "Zone" }), true},
		"prefer none":             {p(func(pol *Policy) { pol.LocalityPreference = "None" }), true},
		"min healthy 0":           {p(func(pol *Policy) { pol.MinHealthyPercent = 0 }), true},
		"min healthy 100":         {p(func(pol *Policy) { pol.MinHealthyPercent = 100 }), true},
		"failover from a cluster": {p(func(pol *Policy) { pol.Failover[0].From = Locality{Cluster: "east-1"} }), true},
		"distribute 100":          {p(split(100)), true},
		"distribute 80+20":        {p(split(80, 20)), true},
		"no namespace":            {p(func(pol *Policy) { pol.Namespace = "" }), false},
		"no name":                 {p(func(pol *Policy) { pol.Name = "" }), false},
		"no preference":           {p(func(pol *Policy) { pol.LocalityPreference = "" }), false},
		"lower-case preference":   {p(func(pol *Policy) { pol.LocalityPreference = "zone" }), false},
		"min healthy -1":          {p(func(pol *Policy) { pol.MinHealthyPercent = -1 }), false},
		"min healthy 101":         {p(func(pol *Policy) { pol.MinHealthyPercent = 101 }), false},
		"demote 0":                {p(func(pol *Policy) { pol.DemoteAfter = dur(0) }), false},
		"demote negative":         {p(func(pol *Policy) { pol.DemoteAfter = dur(-time.Second) }), false},
		"drop equals demote":      {p(func(pol *Policy) { pol.DropAfter = pol.DemoteAfter }), false},
		"drop before demote":      {p(func(pol *Policy) { pol.DropAfter = dur(time.Second) }), false},
		"failover from nowhere":   {p(func(pol *Policy) { pol.Failover[0].From = Locality{} }), false},
		"failover from region and cluster": {p(func(pol *Policy) {
			pol.Failover[0].From = Locality{Region: "us-east", Cluster: "east-1"}
		}), false},
		"distribute 99":      {p(split(90, 9)), false},
		"distribute 101":     {p(split(90, 11)), false},
		"distribute nowhere": {p(split()), false},
		"second distribute rule wrong": {p(func(pol *Policy) {
			split(100)(pol)
			pol.Distribute = append(pol.Distribute, DistributeRule{From: "*", To: []WeightedLocality{{Locality: "*", Weight: 50}}})
		}), false},
	})
}

func TestSelects(t *testing.T) {
	byRef := &GlobalService{Namespace: "shop", Name: "cart", Hostname: "h", Service: &ServiceRef{Namespace: "shop", Name: "cart"}}
	elsewhere := &GlobalService{Namespace: "shop", Name: "payments", Hostname: "h", Service: &ServiceRef{Namespace: "billing", Name: "pay"}}
	bySelector := &GlobalService{Namespace: "shop", Name: "frontends", Hostname: "h",
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "front"}}}
	byExpression := &GlobalService{Namespace: "shop", Name: "edge", Hostname: "h",
		Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"front", "edge"}},
			{Key: "canary", Operator: metav1.LabelSelectorOpDoesNotExist},
		}}}
	everything := &GlobalService{Namespace: "shop", Name: "all", Hostname: "h", Selector: &metav1.LabelSelector{}}
	restricted := &GlobalService{Namespace: "shop", Name: "cart", Hostname: "h", Service: &ServiceRef{Namespace: "shop", Name: "cart"},
		Clusters: []string{"east-1", "west-1"}}
	restrictedSelector := &GlobalService{Namespace: "shop", Name: "frontends", Hostname: "h", Clusters: []string{"west-1"},
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "front"}}}
	invalidSelector := &GlobalService{Namespace: "shop", Name: "bad", Hostname: "h",
		Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: "Near", Values: []string{"front"}}}}}
	neither := &GlobalService{Namespace: "shop", Name: "cart", Hostname: "h"}

	front := map[string]string{"tier": "front", "app": "web"}
	tests := map[string]struct {
		g                       *GlobalService
		cluster, namespace, svc string
		labels                  map[string]string
		want                    bool
	}{
		"service ref matches":                        {g: byRef, cluster: "east-1", namespace: "shop", svc: "cart", want: true},
		"service ref ignores labels":                 {g: byRef, cluster: "east-1", namespace: "shop", svc: "cart", labels: front, want: true},
		"service ref, other name":                    {g: byRef, cluster: "east-1", namespace: "shop", svc: "checkout", want: false},
		"service ref, other namespace":               {g: byRef, cluster: "east-1", namespace: "store", svc: "cart", want: false},
		"service ref to another namespace":           {g: elsewhere, cluster: "east-1", namespace: "billing", svc: "pay", want: true},
		"service ref to another namespace, own ns":   {g: elsewhere, cluster: "east-1", namespace: "shop", svc: "pay", want: false},
		"selector matches in namespace":              {g: bySelector, cluster: "east-1", namespace: "shop", svc: "web", labels: front, want: true},
		"selector, labels differ":                    {g: bySelector, cluster: "east-1", namespace: "shop", svc: "db", labels: map[string]string{"tier": "back"}, want: false},
		"selector, no labels":                        {g: bySelector, cluster: "east-1", namespace: "shop", svc: "web", want: false},
		"selector, matching labels out of namespace": {g: bySelector, cluster: "east-1", namespace: "store", svc: "web", labels: front, want: false},
		"expressions match":                          {g: byExpression, cluster: "east-1", namespace: "shop", svc: "gw", labels: map[string]string{"tier": "edge"}, want: true},
		"expressions, excluded label present":        {g: byExpression, cluster: "east-1", namespace: "shop", svc: "gw", labels: map[string]string{"tier": "edge", "canary": "yes"}, want: false},
		"empty selector selects the namespace":       {g: everything, cluster: "east-1", namespace: "shop", svc: "anything", want: true},
		"empty selector, other namespace":            {g: everything, cluster: "east-1", namespace: "store", svc: "anything", want: false},
		"clusters restriction, listed":               {g: restricted, cluster: "west-1", namespace: "shop", svc: "cart", want: true},
		"clusters restriction, not listed":           {g: restricted, cluster: "south-1", namespace: "shop", svc: "cart", want: false},
		"clusters restriction, selector listed":      {g: restrictedSelector, cluster: "west-1", namespace: "shop", svc: "web", labels: front, want: true},
		"clusters restriction, selector unlisted":    {g: restrictedSelector, cluster: "east-1", namespace: "shop", svc: "web", labels: front, want: false},
		"invalid selector selects nothing":           {g: invalidSelector, cluster: "east-1", namespace: "shop", svc: "web", labels: front, want: false},
		"invalid selector, no labels":                {g: invalidSelector, cluster: "east-1", namespace: "shop", svc: "web", want: false},
		"neither service nor selector":               {g: neither, cluster: "east-1", namespace: "shop", svc: "cart", want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Selects(tc.g, tc.cluster, tc.namespace, tc.svc, tc.labels); got != tc.want {
				t.Fatalf("Selects(%s, %s, %s/%s, %v) = %v, want %v", tc.g, tc.cluster, tc.namespace, tc.svc, tc.labels, got, tc.want)
			}
		})
	}
}

func TestGlobalServiceString(t *testing.T) {
	if got := validGlobal().String(); got != "shop/cart" {
		t.Fatalf("String() = %q, want shop/cart", got)
	}
}
