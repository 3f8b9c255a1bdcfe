package admit_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/admit"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

func ep(addr, zone string) model.Endpoint {
	return model.Endpoint{Address: addr, Zone: zone, Ready: true, Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}}
}

func record(eps ...model.Endpoint) *model.ServiceEndpoints {
	return &model.ServiceEndpoints{Namespace: "shop", Name: "cart",
		Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}, Endpoints: eps}
}

func addrs(r *model.ServiceEndpoints) []string {
	out := []string{}
	for _, e := range r.Endpoints {
		out = append(out, e.Address)
	}
	return out
}

func TestRecord(t *testing.T) {
	beta := &model.ClusterInfo{Name: "beta", Region: "us-east", Zones: []string{"us-east-1b", "us-east-1c"}, Network: "default"}
	ranged := *beta
	ranged.AddressRanges = []string{"10.250.0.0/16", "fd00::/8"}
	loopback := *beta
	loopback.AddressRanges = []string{"127.0.0.0/8"}
	small := *beta
	small.Limits = model.PublishLimits{MaxEndpointsPerService: 2}
	var copies []model.Endpoint
	for range 200 {
		copies = append(copies, ep("10.250.1.2", "us-east-1a"))
	}
	for _, tc := range []struct {
		name     string
		info     *model.ClusterInfo
		rec      *model.ServiceEndpoints
		want     []string
		rejected []admit.Rejection
	}{{
		name: "everything allowed", info: &ranged,
		rec:  record(ep("10.250.0.1", "us-east-1b"), ep("fd00::1", "us-east-1c"), ep("10.250.0.2", "")),
		want: []string{"10.250.0.1", "fd00::1", "10.250.0.2"},
	}, {
		name: "another cluster's zone, 200 copies", info: beta,
		rec:  record(append([]model.Endpoint{ep("10.250.0.1", "us-east-1b")}, copies...)...),
		want: []string{"10.250.0.1"},
		rejected: []admit.Rejection{{Reason: admit.ZoneNotDeclared, Zone: "us-east-1a", Count: 200,
			Detail: "beta claims zone us-east-1a it does not declare"}},
	}, {
		name: "undeclared zone", info: beta,
		rec:  record(ep("10.250.0.1", "evil-zone-9"), ep("10.250.0.2", "us-east-1b")),
		want: []string{"10.250.0.2"},
		rejected: []admit.Rejection{{Reason: admit.ZoneNotDeclared, Zone: "evil-zone-9", Count: 1,
			Detail: "beta claims zone evil-zone-9 it does not declare"}},
	}, {
		name: "unknown zone stays", info: beta,
		rec:  record(ep("10.250.0.1", "")),
		want: []string{"10.250.0.1"},
	}, {
		name: "reserved addresses", info: beta,
		rec: record(ep("127.0.0.1", "us-east-1b"), ep("169.254.169.254", "us-east-1b"), ep("::1", ""),
			ep("fe80::1", ""), ep("0.0.0.0", ""), ep("224.0.0.1", ""), ep("::ffff:127.0.0.2", ""), ep("10.0.0.1", "us-east-1b")),
		want:     []string{"10.0.0.1"},
		rejected: []admit.Rejection{{Reason: admit.AddressReserved, Count: 7, Detail: "127.0.0.1 is loopback"}},
	}, {
		name: "link-local detail", info: beta,
		rec:      record(ep("169.254.169.254", "us-east-1b")),
		want:     []string{},
		rejected: []admit.Rejection{{Reason: admit.AddressReserved, Count: 1, Detail: "169.254.169.254 is link-local"}},
	}, {
		name: "out of range", info: &ranged,
		rec:  record(ep("192.0.2.10", "us-east-1b"), ep("10.250.3.4", "us-east-1b"), ep("fe00::1", "")),
		want: []string{"10.250.3.4"},
		rejected: []admit.Rejection{{Reason: admit.AddressOutOfRange, Count: 2,
			Detail: "192.0.2.10 is outside 10.250.0.0/16, fd00::/8"}},
	}, {
		name: "reserved addresses a range names explicitly", info: &loopback,
		rec:      record(ep("127.0.0.1", "us-east-1b"), ep("169.254.169.254", "")),
		want:     []string{"127.0.0.1"},
		rejected: []admit.Rejection{{Reason: admit.AddressReserved, Count: 1, Detail: "169.254.169.254 is link-local"}},
	}, {
		name: "no ranges: any routable address", info: beta,
		rec:  record(ep("192.0.2.10", "us-east-1b")),
		want: []string{"192.0.2.10"},
	}, {
		name: "duplicates collapse to the first", info: beta,
		rec:      record(ep("10.0.0.1", "us-east-1b"), ep("10.0.0.2", "us-east-1b"), ep("10.0.0.1", "us-east-1c"), ep("::ffff:10.0.0.2", "")),
		want:     []string{"10.0.0.1", "10.0.0.2"},
		rejected: []admit.Rejection{{Reason: admit.DuplicateAddress, Count: 2, Detail: "10.0.0.1 appears more than once"}},
	}, {
		name: "too many endpoints: the lowest addresses stay, whatever the order", info: &small,
		rec:  record(ep("10.0.0.9", "us-east-1b"), ep("10.0.0.3", "us-east-1b"), ep("10.0.0.10", "us-east-1b"), ep("10.0.0.1", "")),
		want: []string{"10.0.0.3", "10.0.0.1"},
		rejected: []admit.Rejection{{Reason: admit.TooManyEndpoints, Count: 2,
			Detail: "4 endpoints exceed the limit of 2 per service"}},
	}, {
		name: "several reasons, sorted", info: &ranged,
		rec:  record(ep("127.0.0.1", ""), ep("10.250.0.1", "evil"), ep("8.8.8.8", "")),
		want: []string{},
		rejected: []admit.Rejection{
			{Reason: admit.AddressOutOfRange, Count: 1, Detail: "8.8.8.8 is outside 10.250.0.0/16, fd00::/8"},
			{Reason: admit.AddressReserved, Count: 1, Detail: "127.0.0.1 is loopback"},
			{Reason: admit.ZoneNotDeclared, Zone: "evil", Count: 1, Detail: "beta claims zone evil it does not declare"},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			before := fmt.Sprint(tc.rec)
			got, rejected := admit.Record(tc.info, tc.rec)
			if fmt.Sprint(tc.rec) != before {
				t.Fatal("Record modified its input")
			}
			if !reflect.DeepEqual(addrs(got), tc.want) {
				t.Errorf("kept %v, want %v", addrs(got), tc.want)
			}
			if !reflect.DeepEqual(rejected, tc.rejected) {
				t.Errorf("rejected %+v, want %+v", rejected, tc.rejected)
			}
			if len(tc.rejected) == 0 && got != tc.rec {
				t.Error("a record admitted whole must be returned as is (readers compare pointers)")
			}
		})
	}
}

func TestLimitsOf(t *testing.T) {
	def := admit.Limits{Services: v1.DefaultMaxServices, EndpointsPerService: v1.DefaultMaxEndpointsPerService, ValueBytes: v1.DefaultMaxValueBytes}
	if got := admit.LimitsOf(nil); got != def {
		t.Errorf("LimitsOf(nil) = %+v, want the defaults %+v", got, def)
	}
	info := &model.ClusterInfo{Limits: model.PublishLimits{MaxServices: 3}}
	want := def
	want.Services = 3
	if got := admit.LimitsOf(info); got != want {
		t.Errorf("LimitsOf = %+v, want %+v", got, want)
	}
}

// changedAt feeds a metric only: whatever it says (zero, far future, long ago), a
// record decodes, is admitted as it is, and keeps it, also when endpoints are refused.
func TestRecordKeepsChangedAt(t *testing.T) {
	info := &model.ClusterInfo{Name: "east-1", Region: "eu", Zones: []string{"eu-a"}, Network: "n"}
	key := "/meshfed/v1/clusters/east-1/services/shop/cart"
	for _, at := range []time.Time{{}, time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC)} {
		rec := record(ep("10.0.0.1", "eu-a"))
		rec.ChangedAt = at
		value, err := model.Encode(rec)
		if err != nil {
			t.Fatalf("changedAt %v: encode: %v", at, err)
		}
		decoded, err := model.Decode(key, value)
		if err != nil {
			t.Fatalf("changedAt %v: decode: %v", at, err)
		}
		got, rejections := admit.Record(info, decoded.(*model.ServiceEndpoints))
		if len(rejections) > 0 || !got.ChangedAt.Equal(at) {
			t.Errorf("changedAt %v: admitted with changedAt %v, refusals %v", at, got.ChangedAt, rejections)
		}
		// A copy without refused endpoints keeps it too.
		rec.Endpoints = append(rec.Endpoints, ep("10.0.0.2", "undeclared"))
		if got, _ := admit.Record(info, rec); !got.ChangedAt.Equal(at) {
			t.Errorf("changedAt %v: the admitted copy says %v", at, got.ChangedAt)
		}
	}
}

// TestRecordRefusesInvalidLabels: an endpoint with more labels than
// model.MaxEndpointLabels, or one Kubernetes would refuse, is refused with the reason;
// bounded valid labels pass.
func TestRecordRefusesInvalidLabels(t *testing.T) {
	info := &model.ClusterInfo{Name: "beta", Region: "us-east", Zones: []string{"us-east-1b"}, Network: "default"}
	labelled := func(addr string, labels map[string]string) model.Endpoint {
		e := ep(addr, "us-east-1b")
		e.Labels = labels
		return e
	}
	many := map[string]string{}
	for i := range model.MaxEndpointLabels + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	got, rejected := admit.Record(info, record(
		labelled("10.0.0.1", map[string]string{"version": "v2"}),
		labelled("10.0.0.2", many),
		labelled("10.0.0.3", map[string]string{"version": "not a value"}),
	))
	if want := []string{"10.0.0.1"}; !reflect.DeepEqual(addrs(got), want) {
		t.Errorf("admitted %v, want %v", addrs(got), want)
	}
	if len(rejected) != 1 || rejected[0].Reason != admit.InvalidLabels || rejected[0].Count != 2 {
		t.Errorf("rejected %+v, want 2 endpoints for %s", rejected, admit.InvalidLabels)
	}
}
