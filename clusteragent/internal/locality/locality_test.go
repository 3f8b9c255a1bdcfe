package locality

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// The test federation: alpha and beta in us-east, gamma in eu-west, delta in ap-south.
var (
	alphaA = cand("alpha", "us-east", "us-east-a", 3, 3)
	alphaB = cand("alpha", "us-east", "us-east-b", 2, 2)
	betaA  = cand("beta", "us-east", "us-east-a", 4, 4)
	betaB  = cand("beta", "us-east", "us-east-b", 1, 1)
	gammaA = cand("gamma", "eu-west", "eu-west-a", 5, 5)
	gammaB = cand("gamma", "eu-west", "eu-west-b", 6, 6)
	deltaA = cand("delta", "ap-south", "ap-south-a", 7, 7)

	fleet = []Candidate{alphaA, alphaB, betaA, betaB, gammaA, gammaB, deltaA}

	inAlphaA = Client{Cluster: "alpha", Region: "us-east", Zone: "us-east-a"}
)

func cand(cluster, region, zone string, healthy, total uint32) Candidate {
	return Candidate{
		Locality: Locality{Cluster: cluster, Region: region, Zone: zone, Network: "net-" + cluster},
		Healthy:  healthy,
		Total:    total,
	}
}

func counts(c Candidate, healthy, total uint32) Candidate {
	c.Healthy, c.Total = healthy, total
	return c
}

func stale(c Candidate) Candidate {
	c.State = Stale
	return c
}

func state(c Candidate, s State) Candidate {
	c.State = s
	return c
}

// policy returns a valid policy with the defaults; mods adjust it.
func policy(mods ...func(*model.Policy)) *model.Policy {
	p := &model.Policy{
		Namespace:          "shop",
		Name:               "cart",
		LocalityPreference: "Zone",
		FallbackToAny:      true,
		MinHealthyPercent:  70,
		FailbackHold:       metav1.Duration{Duration: 30e9},
		DemoteAfter:        metav1.Duration{Duration: 30e9},
		DropAfter:          metav1.Duration{Duration: 600e9},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func prefer(pref string) func(*model.Policy) {
	return func(p *model.Policy) { p.LocalityPreference = pref }
}

func noFallback(p *model.Policy) { p.FallbackToAny = false }

func minHealthy(m int32) func(*model.Policy) {
	return func(p *model.Policy) { p.MinHealthyPercent = m }
}

func failover(rules ...model.FailoverRule) func(*model.Policy) {
	return func(p *model.Policy) { p.Failover = rules }
}

func distribute(rules ...model.DistributeRule) func(*model.Policy) {
	return func(p *model.Policy) { p.Distribute = rules }
}

func region(r string) model.Locality  { return model.Locality{Region: r} }
func cluster(c string) model.Locality { return model.Locality{Cluster: c} }

func rule(from model.Locality, to ...model.Locality) model.FailoverRule {
	return model.FailoverRule{From: from, To: to}
}

// dist builds a distribute rule from "pattern", weight pairs.
func dist(from string, to ...any) model.DistributeRule {
	r := model.DistributeRule{From: from}
	for i := 0; i < len(to); i += 2 {
		r.To = append(r.To, model.WeightedLocality{Locality: to[i].(string), Weight: int32(to[i+1].(int))})
	}
	return r
}

// rows renders a table compactly: "<priority> <cluster>/<zone> <weight> <reason>",
// excluded localities with priority "-".
func rows(t Table) []string {
	var out []string
	for p, es := range t.Priorities {
		for _, e := range es {
			out = append(out, fmt.Sprintf("%d %s/%s %d %s", p, e.Cluster, e.Zone, e.Weight, e.Reason))
		}
	}
	for _, e := range t.Excluded {
		out = append(out, fmt.Sprintf("- %s/%s %d %s", e.Cluster, e.Zone, e.Weight, e.Reason))
	}
	return out
}

func TestPrioritize(t *testing.T) {
	tests := map[string]struct {
		client Client
		cands  []Candidate
		policy *model.Policy
		want   []string
	}{
		"empty input": {
			client: inAlphaA,
			want:   nil,
		},
		"default policy: zone, zone in other cluster, own cluster, region, fallback": {
			client: inAlphaA,
			cands:  fleet,
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 beta/us-east-a 4 same zone, other cluster",
				"2 alpha/us-east-b 2 same cluster",
				"3 beta/us-east-b 1 same region",
				"4 delta/ap-south-a 7 fallback",
				"4 gamma/eu-west-a 5 fallback",
				"4 gamma/eu-west-b 6 fallback",
			},
		},
		"explicit defaults equal a nil policy": {
			client: inAlphaA,
			cands:  fleet,
			policy: policy(),
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 beta/us-east-a 4 same zone, other cluster",
				"2 alpha/us-east-b 2 same cluster",
				"3 beta/us-east-b 1 same region",
				"4 delta/ap-south-a 7 fallback",
				"4 gamma/eu-west-a 5 fallback",
				"4 gamma/eu-west-b 6 fallback",
			},
		},
		"client without zone: cluster and region tiers only": {
			client: Client{Cluster: "alpha", Region: "us-east"},
			cands:  fleet,
			want: []string{
				"0 alpha/us-east-a 3 same cluster",
				"0 alpha/us-east-b 2 same cluster",
				"1 beta/us-east-a 4 same region",
				"1 beta/us-east-b 1 same region",
				"2 delta/ap-south-a 7 fallback",
				"2 gamma/eu-west-a 5 fallback",
				"2 gamma/eu-west-b 6 fallback",
			},
		},
		"client in an unknown cluster: zone and region of others": {
			client: Client{Cluster: "omega", Region: "us-east", Zone: "us-east-a"},
			cands:  fleet,
			want: []string{
				"0 alpha/us-east-a 3 same zone, other cluster",
				"0 beta/us-east-a 4 same zone, other cluster",
				"1 alpha/us-east-b 2 same region",
				"1 beta/us-east-b 1 same region",
				"2 delta/ap-south-a 7 fallback",
				"2 gamma/eu-west-a 5 fallback",
				"2 gamma/eu-west-b 6 fallback",
			},
		},
		"client with no locality: everything is fallback": {
			client: Client{},
			cands:  []Candidate{alphaA, gammaA},
			want: []string{
				"0 alpha/us-east-a 3 fallback",
				"0 gamma/eu-west-a 5 fallback",
			},
		},
		"a zone of the same name in another region is not the same zone": {
			client: Client{Cluster: "alpha", Region: "us-east", Zone: "z1"},
			cands: []Candidate{
				cand("alpha", "us-east", "z1", 1, 1),
				cand("gamma", "eu-west", "z1", 2, 2),
			},
			want: []string{
				"0 alpha/z1 1 same zone",
				"1 gamma/z1 2 fallback",
			},
		},
		"own cluster matches by zone even when the client's region is unknown": {
			client: Client{Cluster: "alpha", Zone: "us-east-a"},
			cands:  []Candidate{alphaA, alphaB, betaA},
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 alpha/us-east-b 2 same cluster",
				"2 beta/us-east-a 4 fallback",
			},
		},
		"endpoints of unknown zone in own cluster are same cluster": {
			client: inAlphaA,
			cands:  []Candidate{cand("alpha", "us-east", "", 2, 2), alphaA},
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 alpha/ 2 same cluster",
			},
		},
		"region preference: own cluster, then region, zones alike": {
			client: inAlphaA,
			cands:  fleet,
			policy: policy(prefer("Region")),
			want: []string{
				"0 alpha/us-east-a 3 same cluster",
				"0 alpha/us-east-b 2 same cluster",
				"1 beta/us-east-a 4 same region",
				"1 beta/us-east-b 1 same region",
				"2 delta/ap-south-a 7 fallback",
				"2 gamma/eu-west-a 5 fallback",
				"2 gamma/eu-west-b 6 fallback",
			},
		},
		"no preference and no rule: one fallback priority": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, betaB, gammaA},
			policy: policy(prefer("None")),
			want: []string{
				"0 alpha/us-east-a 3 fallback",
				"0 beta/us-east-b 1 fallback",
				"0 gamma/eu-west-a 5 fallback",
			},
		},
		"no preference, no rule, no fallback: nothing": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, gammaA},
			policy: policy(prefer("None"), noFallback),
			want: []string{
				"- alpha/us-east-a 0 not a preferred locality or failover target, and fallbackToAny is false",
				"- gamma/eu-west-a 0 not a preferred locality or failover target, and fallbackToAny is false",
			},
		},
		"unknown preference reads as Zone": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, alphaB},
			policy: policy(prefer("")),
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 alpha/us-east-b 2 same cluster",
			},
		},
		"failover by region: targets after the region, in order": {
			client: inAlphaA,
			cands:  fleet,
			policy: policy(failover(rule(region("us-east"), cluster("delta"), region("eu-west")))),
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 beta/us-east-a 4 same zone, other cluster",
				"2 alpha/us-east-b 2 same cluster",
				"3 beta/us-east-b 1 same region",
				"4 delta/ap-south-a 7 failover target 1: cluster delta",
				"5 gamma/eu-west-a 5 failover target 2: region eu-west",
				"5 gamma/eu-west-b 6 failover target 2: region eu-west",
			},
		},
		"failover rule for the client's cluster beats the one for its region": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, gammaA, deltaA},
			policy: policy(failover(
				rule(region("us-east"), cluster("delta")),
				rule(cluster("alpha"), region("eu-west")),
			)),
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 gamma/eu-west-a 5 failover target 1: region eu-west",
				"2 delta/ap-south-a 7 fallback",
			},
		},
		"failover rules of other sources do not apply": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, gammaA, deltaA},
			policy: policy(failover(
				rule(region("eu-west"), cluster("delta")),
				rule(cluster("beta"), region("ap-south")),
			)),
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 delta/ap-south-a 7 fallback",
				"1 gamma/eu-west-a 5 fallback",
			},
		},
		"unknown failover targets yield no priorities": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, gammaA, deltaA},
			policy: policy(failover(rule(region("us-east"), region("mars"), cluster("nope"), region("eu-west")))),
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 gamma/eu-west-a 5 failover target 3: region eu-west",
				"2 delta/ap-south-a 7 fallback",
			},
		},
		"a target already placed by preference adds nothing": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, betaA, gammaA},
			policy: policy(failover(rule(region("us-east"), cluster("beta"), region("eu-west")))),
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 beta/us-east-a 4 same zone, other cluster",
				"2 gamma/eu-west-a 5 failover target 2: region eu-west",
			},
		},
		"a rule for the client's cluster puts its targets before the rest of the region": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, betaA, gammaA},
			policy: policy(failover(rule(cluster("alpha"), region("eu-west")))),
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 gamma/eu-west-a 5 failover target 1: region eu-west",
				"2 beta/us-east-a 4 same zone, other cluster",
			},
		},
		"a cluster rule under region preference": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, betaA, gammaA},
			policy: policy(prefer(PreferRegion), failover(rule(cluster("alpha"), cluster("gamma")))),
			want: []string{
				"0 alpha/us-east-a 3 same cluster",
				"1 gamma/eu-west-a 5 failover target 1: cluster gamma",
				"2 beta/us-east-a 4 same region",
			},
		},
		"failover without fallback confines traffic to the targets": {
			client: inAlphaA,
			cands:  fleet,
			policy: policy(noFallback, failover(rule(region("us-east"), region("eu-west")))),
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 beta/us-east-a 4 same zone, other cluster",
				"2 alpha/us-east-b 2 same cluster",
				"3 beta/us-east-b 1 same region",
				"4 gamma/eu-west-a 5 failover target 1: region eu-west",
				"4 gamma/eu-west-b 6 failover target 1: region eu-west",
				"- delta/ap-south-a 0 not a preferred locality or failover target, and fallbackToAny is false",
			},
		},
		"no preference with failover: targets, then the rest": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, betaA, gammaA, deltaA},
			policy: policy(prefer("None"), failover(rule(cluster("alpha"), region("eu-west"), cluster("beta")))),
			want: []string{
				"0 gamma/eu-west-a 5 failover target 1: region eu-west",
				"1 beta/us-east-a 4 failover target 2: cluster beta",
				"2 alpha/us-east-a 3 fallback",
				"2 delta/ap-south-a 7 fallback",
			},
		},
		"no healthy endpoints: excluded, priorities stay contiguous": {
			client: inAlphaA,
			cands:  []Candidate{counts(alphaA, 0, 3), betaA, counts(alphaB, 0, 0), betaB},
			want: []string{
				"0 beta/us-east-a 4 same zone, other cluster",
				"1 beta/us-east-b 1 same region",
				"- alpha/us-east-a 0 no healthy endpoints",
				"- alpha/us-east-b 0 no healthy endpoints",
			},
		},
		"weights follow healthy endpoints, not totals": {
			client: Client{Cluster: "omega", Region: "us-east", Zone: "us-east-a"},
			cands:  []Candidate{counts(alphaA, 9, 9), counts(betaA, 1, 1)},
			policy: policy(minHealthy(0)),
			want: []string{
				"0 alpha/us-east-a 9 same zone, other cluster",
				"0 beta/us-east-a 1 same zone, other cluster",
			},
		},
		"stale cluster demoted below everything, fallback included": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, stale(betaA), stale(betaB), gammaA},
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 gamma/eu-west-a 5 fallback",
				"2 beta/us-east-a 4 demoted: stale cluster",
				"2 beta/us-east-b 1 demoted: stale cluster",
			},
		},
		"own cluster stale: even the same zone is demoted": {
			client: inAlphaA,
			cands:  []Candidate{stale(alphaA), betaB},
			want: []string{
				"0 beta/us-east-b 1 same region",
				"1 alpha/us-east-a 3 demoted: stale cluster",
			},
		},
		"all stale: one priority": {
			client: inAlphaA,
			cands:  []Candidate{stale(alphaA), stale(betaA), stale(gammaA)},
			want: []string{
				"0 alpha/us-east-a 3 demoted: stale cluster",
				"0 beta/us-east-a 4 demoted: stale cluster",
				"0 gamma/eu-west-a 5 demoted: stale cluster",
			},
		},
		"stale without healthy endpoints is excluded": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, stale(counts(betaA, 0, 4))},
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"- beta/us-east-a 0 no healthy endpoints",
			},
		},
		"stale outside the targets without fallback is excluded": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, stale(gammaA), stale(deltaA)},
			policy: policy(noFallback, failover(rule(region("us-east"), region("eu-west")))),
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 gamma/eu-west-a 5 demoted: stale cluster",
				"- delta/ap-south-a 0 not a preferred locality or failover target, and fallbackToAny is false",
			},
		},
		"dropped and unknown states are excluded": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, state(betaA, Dropped), state(gammaA, State(9))},
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"- beta/us-east-a 0 dropped cluster",
				"- gamma/eu-west-a 0 dropped cluster",
			},
		},
		"duplicate localities are merged, the worse state wins": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, counts(alphaA, 2, 2), betaA, stale(counts(betaA, 1, 1))},
			want: []string{
				"0 alpha/us-east-a 5 same zone",
				"1 beta/us-east-a 5 demoted: stale cluster",
			},
		},
		"min healthy percent out of range is clamped": {
			client: inAlphaA,
			cands:  []Candidate{counts(alphaA, 1, 2), betaA},
			policy: policy(minHealthy(-5)),
			want: []string{
				"0 alpha/us-east-a 1 same zone",
				"1 beta/us-east-a 4 same zone, other cluster",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Prioritize(tc.client, tc.cands, tc.policy)
			if diff := cmp.Diff(tc.want, rows(got)); diff != "" {
				t.Errorf("Prioritize() (-want +got):\n%s\n%s", diff, got)
			}
			checkInvariants(t, tc.cands, got)
		})
	}
}

func TestPrioritizeSettings(t *testing.T) {
	tests := map[string]struct {
		policy                   *model.Policy
		wantPref                 string
		wantFallback             bool
		wantMin                  int32
		wantFailover, wantDistFr string
	}{
		"nil policy: defaults": {
			policy: nil, wantPref: "Zone", wantFallback: true, wantMin: 70,
		},
		"policy settings": {
			policy:   policy(prefer("Region"), noFallback, minHealthy(50)),
			wantPref: "Region", wantFallback: false, wantMin: 50,
		},
		"too high min healthy": {
			policy:   policy(minHealthy(250)),
			wantPref: "Zone", wantFallback: true, wantMin: 100,
		},
		"matched failover rule": {
			policy:       policy(failover(rule(region("eu-west"), region("us-east")), rule(region("us-east"), region("eu-west")))),
			wantPref:     "Zone",
			wantFallback: true, wantMin: 70, wantFailover: "us-east",
		},
		"distribute beats failover when both are set": {
			policy:       policy(failover(rule(region("us-east"), region("eu-west"))), distribute(dist("us-east", "eu-west", 100))),
			wantPref:     "Zone",
			wantFallback: true, wantMin: 70, wantDistFr: "us-east",
		},
		"failover applies when no distribute rule matches": {
			policy:       policy(failover(rule(region("us-east"), region("eu-west"))), distribute(dist("eu-west", "eu-west", 100))),
			wantPref:     "Zone",
			wantFallback: true, wantMin: 70, wantFailover: "us-east",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Prioritize(inAlphaA, fleet, tc.policy)
			if got.Preference != tc.wantPref || got.FallbackToAny != tc.wantFallback || got.MinHealthyPercent != tc.wantMin {
				t.Errorf("settings = %s, %t, %d; want %s, %t, %d", got.Preference, got.FallbackToAny, got.MinHealthyPercent,
					tc.wantPref, tc.wantFallback, tc.wantMin)
			}
			var fo, di string
			if got.Failover != nil {
				fo = got.Failover.From.Region
			}
			if got.Distribute != nil {
				di = got.Distribute.From
			}
			if fo != tc.wantFailover || di != tc.wantDistFr {
				t.Errorf("rules: failover from %q, distribute from %q; want %q, %q", fo, di, tc.wantFailover, tc.wantDistFr)
			}
			if got.Policy != tc.policy {
				t.Errorf("Policy = %p, want %p", got.Policy, tc.policy)
			}
		})
	}
}

func TestSpillOver(t *testing.T) {
	other := Client{Cluster: "omega", Region: "us-east", Zone: "us-east-a"}
	tests := map[string]struct {
		client Client
		cands  []Candidate
		policy *model.Policy
		want   []string
	}{
		"below min healthy: the next tier joins the priority": {
			// 4/10 = 40% < 70%: same zone keeps 40/70 = 57.14%.
			client: inAlphaA,
			cands:  []Candidate{counts(alphaA, 4, 10), betaA, alphaB},
			want: []string{
				"0 alpha/us-east-a 571429 same zone (40% healthy < 70%: keeps 57.1%)",
				"0 beta/us-east-a 428571 spill-over from priority 0 (40% healthy < 70%): same zone, other cluster",
				"1 alpha/us-east-b 2 same cluster",
			},
		},
		"at min healthy: no spill-over": {
			client: inAlphaA,
			cands:  []Candidate{counts(alphaA, 7, 10), betaA},
			want: []string{
				"0 alpha/us-east-a 7 same zone",
				"1 beta/us-east-a 4 same zone, other cluster",
			},
		},
		"min healthy 0: never": {
			client: inAlphaA,
			cands:  []Candidate{counts(alphaA, 1, 100), betaA},
			policy: policy(minHealthy(0)),
			want: []string{
				"0 alpha/us-east-a 1 same zone",
				"1 beta/us-east-a 4 same zone, other cluster",
			},
		},
		"min healthy 100: any unhealthy endpoint spills": {
			client: inAlphaA,
			cands:  []Candidate{counts(alphaA, 9, 10), betaA},
			policy: policy(minHealthy(100)),
			want: []string{
				"0 alpha/us-east-a 900000 same zone (90% healthy < 100%: keeps 90%)",
				"0 beta/us-east-a 100000 spill-over from priority 0 (90% healthy < 100%): same zone, other cluster",
			},
		},
		"unhealthy localities count towards the tier's total": {
			// beta 10/10 and gamma-like epsilon 0/10 in the same tier: 50% healthy.
			client: other,
			cands: []Candidate{
				counts(betaA, 10, 10),
				cand("epsilon", "us-east", "us-east-a", 0, 10),
				alphaB,
			},
			want: []string{
				"0 beta/us-east-a 714286 same zone, other cluster (50% healthy < 70%: keeps 71.4%)",
				"0 alpha/us-east-b 285714 spill-over from priority 0 (50% healthy < 70%): same region",
				"- epsilon/us-east-a 0 no healthy endpoints",
			},
		},
		"weights within each tier keep their proportions": {
			// 6/15 = 40%: keeps 571429, split 2:4; the region tier gets 428571, split 2:1.
			client: other,
			cands: []Candidate{
				counts(alphaA, 2, 5), counts(betaA, 4, 10),
				counts(alphaB, 2, 2), counts(betaB, 1, 1),
			},
			want: []string{
				"0 alpha/us-east-a 190476 same zone, other cluster (40% healthy < 70%: keeps 57.1%)",
				"0 beta/us-east-a 380953 same zone, other cluster (40% healthy < 70%: keeps 57.1%)",
				"0 alpha/us-east-b 285714 spill-over from priority 0 (40% healthy < 70%): same region",
				"0 beta/us-east-b 142857 spill-over from priority 0 (40% healthy < 70%): same region",
			},
		},
		"no cascade: the tier that took spill-over spills no further": {
			client: inAlphaA,
			cands: []Candidate{
				counts(alphaA, 1, 10), counts(betaA, 1, 10), // both 10%
				counts(alphaB, 1, 10), // 10%, spills into the region tier
				betaB,
				gammaA,
			},
			want: []string{
				"0 alpha/us-east-a 142857 same zone (10% healthy < 70%: keeps 14.2%)",
				"0 beta/us-east-a 857143 spill-over from priority 0 (10% healthy < 70%): same zone, other cluster",
				"1 alpha/us-east-b 142857 same cluster (10% healthy < 70%: keeps 14.2%)",
				"1 beta/us-east-b 857143 spill-over from priority 1 (10% healthy < 70%): same region",
				"2 gamma/eu-west-a 5 fallback",
			},
		},
		"empty tiers are skipped: spill-over reaches the next non-empty one": {
			client: inAlphaA,
			cands:  []Candidate{counts(alphaA, 1, 2), counts(betaA, 0, 4), gammaA},
			want: []string{
				"0 alpha/us-east-a 714286 same zone (50% healthy < 70%: keeps 71.4%)",
				"0 gamma/eu-west-a 285714 spill-over from priority 0 (50% healthy < 70%): fallback",
				"- beta/us-east-a 0 no healthy endpoints",
			},
		},
		"last tier has nowhere to spill": {
			client: inAlphaA,
			cands:  []Candidate{counts(alphaA, 1, 10)},
			want:   []string{"0 alpha/us-east-a 1 same zone"},
		},
		"never into stale clusters": {
			client: inAlphaA,
			cands:  []Candidate{counts(alphaA, 1, 10), stale(betaA)},
			want: []string{
				"0 alpha/us-east-a 1 same zone",
				"1 beta/us-east-a 4 demoted: stale cluster",
			},
		},
		"stale localities do not count in the fresh tier's health": {
			// beta/us-east-a would share alpha's tier, 3/103 healthy, were it fresh.
			client: other,
			cands:  []Candidate{alphaA, stale(counts(betaA, 0, 100)), betaB},
			want: []string{
				"0 alpha/us-east-a 3 same zone, other cluster",
				"1 beta/us-east-b 1 same region",
				"- beta/us-east-a 0 no healthy endpoints",
			},
		},
		"failover targets spill into the next target": {
			client: inAlphaA,
			cands:  []Candidate{counts(gammaA, 3, 10), deltaA},
			policy: policy(noFallback, failover(rule(region("us-east"), region("eu-west"), region("ap-south")))),
			want: []string{
				"0 gamma/eu-west-a 428571 failover target 1: region eu-west (30% healthy < 70%: keeps 42.8%)",
				"0 delta/ap-south-a 571429 spill-over from priority 0 (30% healthy < 70%): failover target 2: region ap-south",
			},
		},
		"fraction just below the threshold prints below it": {
			// 699/1000 = 69.9%.
			client: inAlphaA,
			cands:  []Candidate{counts(alphaA, 699, 1000), betaA},
			want: []string{
				"0 alpha/us-east-a 998571 same zone (69.9% healthy < 70%: keeps 99.8%)",
				"0 beta/us-east-a 1429 spill-over from priority 0 (69.9% healthy < 70%): same zone, other cluster",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Prioritize(tc.client, tc.cands, tc.policy)
			if diff := cmp.Diff(tc.want, rows(got)); diff != "" {
				t.Errorf("Prioritize() (-want +got):\n%s\n%s", diff, got)
			}
			checkInvariants(t, tc.cands, got)
		})
	}
}

// TestSpillOverShares checks the shares against h/m exactly, for many fractions.
func TestSpillOverShares(t *testing.T) {
	for _, m := range []int32{1, 50, 70, 99, 100} {
		for total := uint32(1); total <= 40; total++ {
			for healthy := uint32(1); healthy <= total; healthy++ {
				got := Prioritize(inAlphaA, []Candidate{counts(alphaA, healthy, total), betaA}, policy(minHealthy(m)))
				below := uint64(healthy)*100 < uint64(m)*uint64(total)
				if !below {
					if len(got.Priorities) != 2 {
						t.Fatalf("m=%d %d/%d: want 2 priorities, got\n%s", m, healthy, total, got)
					}
					continue
				}
				if len(got.Priorities) != 1 {
					t.Fatalf("m=%d %d/%d: want 1 priority, got\n%s", m, healthy, total, got)
				}
				es := got.Priorities[0]
				share := float64(es[0].Weight) / float64(es[0].Weight+es[1].Weight)
				want := float64(healthy) / float64(total) / (float64(m) / 100)
				if math.Abs(share-want) > 1e-6 {
					t.Errorf("m=%d %d/%d: keeps %.7f, want %.7f", m, healthy, total, share, want)
				}
			}
		}
	}
}

func TestDistribute(t *testing.T) {
	tests := map[string]struct {
		client Client
		cands  []Candidate
		policy *model.Policy
		want   []string
	}{
		"weights split by healthy endpoints within a destination": {
			// eu-west/*: 600000 split 5:6; us-east: 400000 split 3:2:4:1.
			client: inAlphaA,
			cands:  fleet,
			policy: policy(distribute(dist("us-east/*", "eu-west/*", 60, "us-east", 40))),
			want: []string{
				"0 alpha/us-east-a 120000 distribute 40% to us-east",
				"0 alpha/us-east-b 80000 distribute 40% to us-east",
				"0 beta/us-east-a 160000 distribute 40% to us-east",
				"0 beta/us-east-b 40000 distribute 40% to us-east",
				"0 gamma/eu-west-a 272727 distribute 60% to eu-west/*",
				"0 gamma/eu-west-b 327273 distribute 60% to eu-west/*",
				"1 delta/ap-south-a 7 fallback",
			},
		},
		"a locality matching several destinations takes the most specific": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, alphaB, betaA, gammaA},
			policy: policy(distribute(dist("*", "*", 10, "us-east", 20, "us-east/*", 30, "us-east/us-east-a", 40))),
			want: []string{
				"0 alpha/us-east-a 171429 distribute 40% to us-east/us-east-a",
				"0 alpha/us-east-b 300000 distribute 30% to us-east/*",
				"0 beta/us-east-a 228571 distribute 40% to us-east/us-east-a",
				"0 gamma/eu-west-a 100000 distribute 10% to *",
			},
		},
		"a destination without healthy localities gives its share to the others": {
			client: inAlphaA,
			cands:  []Candidate{counts(gammaA, 0, 5), alphaA},
			policy: policy(distribute(dist("us-east", "eu-west", 70, "us-east", 30))),
			want: []string{
				"0 alpha/us-east-a 300000 distribute 30% to us-east",
				"- gamma/eu-west-a 0 no healthy endpoints",
			},
		},
		"nothing healthy in the destinations: the rest, then stale": {
			client: inAlphaA,
			cands:  []Candidate{counts(gammaA, 0, 5), stale(gammaB), alphaA},
			policy: policy(distribute(dist("us-east", "eu-west", 100))),
			want: []string{
				"0 alpha/us-east-a 3 fallback",
				"1 gamma/eu-west-b 6 demoted: stale cluster",
				"- gamma/eu-west-a 0 no healthy endpoints",
			},
		},
		"without fallback only the destinations": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, gammaA, stale(deltaA)},
			policy: policy(noFallback, distribute(dist("us-east", "eu-west", 100))),
			want: []string{
				"0 gamma/eu-west-a 1000000 distribute 100% to eu-west",
				"- alpha/us-east-a 0 not a distribute destination, and fallbackToAny is false",
				"- delta/ap-south-a 0 not a distribute destination, and fallbackToAny is false",
			},
		},
		"stale destinations are demoted": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, stale(gammaA)},
			policy: policy(noFallback, distribute(dist("us-east", "eu-west", 50, "us-east", 50))),
			want: []string{
				"0 alpha/us-east-a 500000 distribute 50% to us-east",
				"1 gamma/eu-west-a 5 demoted: stale cluster",
			},
		},
		"client matched by no rule: locality preference": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, gammaA},
			policy: policy(distribute(dist("eu-west", "us-east", 100))),
			want: []string{
				"0 alpha/us-east-a 3 same zone",
				"1 gamma/eu-west-a 5 fallback",
			},
		},
		"client without zone is matched by region/*": {
			client: Client{Cluster: "alpha", Region: "us-east"},
			cands:  []Candidate{alphaA, gammaA},
			policy: policy(distribute(dist("us-east/us-east-a", "us-east", 100), dist("us-east/*", "eu-west", 100))),
			want: []string{
				"0 gamma/eu-west-a 1000000 distribute 100% to eu-west",
				"1 alpha/us-east-a 3 fallback",
			},
		},
		"distribute priority below min healthy spills into the rest": {
			client: inAlphaA,
			cands:  []Candidate{counts(gammaA, 2, 4), counts(gammaB, 3, 6), alphaA},
			policy: policy(distribute(dist("us-east", "eu-west/eu-west-a", 50, "eu-west/eu-west-b", 50))),
			want: []string{
				"0 gamma/eu-west-a 357143 distribute 50% to eu-west/eu-west-a (50% healthy < 70%: keeps 71.4%)",
				"0 gamma/eu-west-b 357143 distribute 50% to eu-west/eu-west-b (50% healthy < 70%: keeps 71.4%)",
				"0 alpha/us-east-a 285714 spill-over from priority 0 (50% healthy < 70%): fallback",
			},
		},
		"malformed and weightless destinations take nothing": {
			client: inAlphaA,
			cands:  []Candidate{alphaA, gammaA},
			policy: policy(distribute(dist("us-east", "eu-west//x", 50, "us-east", 0, "eu-west", 50))),
			want: []string{
				"0 gamma/eu-west-a 500000 distribute 50% to eu-west",
				"1 alpha/us-east-a 3 fallback",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Prioritize(tc.client, tc.cands, tc.policy)
			if diff := cmp.Diff(tc.want, rows(got)); diff != "" {
				t.Errorf("Prioritize() (-want +got):\n%s\n%s", diff, got)
			}
			checkInvariants(t, tc.cands, got)
		})
	}
}

// TestDistributeRounding checks that every destination's share of priority 0 is its
// weight within 0.01%, however awkward the endpoint counts.
func TestDistributeRounding(t *testing.T) {
	tests := map[string]struct {
		rule  model.DistributeRule
		cands []Candidate
	}{
		"thirds over odd counts": {
			rule: dist("*", "us-east", 33, "eu-west", 33, "ap-south", 34),
			cands: []Candidate{
				counts(alphaA, 7, 7), counts(alphaB, 3, 3), counts(betaA, 11, 11), counts(betaB, 13, 13),
				counts(gammaA, 1, 1), counts(gammaB, 997, 997), counts(deltaA, 3, 3),
			},
		},
		"1% to a huge destination, 99% to a tiny one": {
			rule:  dist("*", "us-east", 1, "eu-west", 99),
			cands: []Candidate{counts(alphaA, 4_000_000_000, 4_000_000_000), counts(betaA, 4_000_000_000, 4_000_000_000), counts(gammaA, 1, 1)},
		},
		"many localities in one destination": {
			rule:  dist("*", "us-east", 5, "eu-west", 95),
			cands: manyLocalities(500),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Prioritize(inAlphaA, tc.cands, policy(distribute(tc.rule)))
			checkInvariants(t, tc.cands, got)
			perDest := map[string]uint64{}
			var total uint64
			for _, e := range got.Priorities[0] {
				if e.Weight == 0 {
					t.Fatalf("zero weight: %+v", e)
				}
				perDest[e.Region] += uint64(e.Weight)
				total += uint64(e.Weight)
			}
			for _, to := range tc.rule.To {
				share := float64(perDest[to.Locality]) / float64(total) * 100
				if math.Abs(share-float64(to.Weight)) > 0.01 {
					t.Errorf("%s: share %.4f%%, want %d%%", to.Locality, share, to.Weight)
				}
			}
		})
	}
}

// manyLocalities returns n localities: half in us-east, half in eu-west.
func manyLocalities(n int) []Candidate {
	var cs []Candidate
	for i := range n {
		r := "us-east"
		if i%2 == 1 {
			r = "eu-west"
		}
		cs = append(cs, cand(fmt.Sprintf("c%03d", i), r, r+"-a", uint32(1+i%7), 10))
	}
	return cs
}

func TestWeights(t *testing.T) {
	t.Run("never 0 when a locality is tiny next to a huge one", func(t *testing.T) {
		got := Prioritize(inAlphaA, []Candidate{
			counts(alphaA, 1, 10),
			counts(betaA, math.MaxUint32, math.MaxUint32),
			counts(cand("epsilon", "us-east", "us-east-a", 1, 1), 1, 1),
		}, nil)
		checkInvariants(t, nil, got)
		want := []string{
			"0 alpha/us-east-a 142857 same zone (10% healthy < 70%: keeps 14.2%)",
			"0 beta/us-east-a 857143 spill-over from priority 0 (10% healthy < 70%): same zone, other cluster",
			"0 epsilon/us-east-a 1 spill-over from priority 0 (10% healthy < 70%): same zone, other cluster",
		}
		if diff := cmp.Diff(want, rows(got)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("a priority's sum stays within uint32", func(t *testing.T) {
		got := Prioritize(inAlphaA, []Candidate{
			counts(alphaA, math.MaxUint32, math.MaxUint32),
			counts(alphaA, 5, 5), // merged: saturates
			counts(betaA, math.MaxUint32, math.MaxUint32),
			counts(betaB, math.MaxUint32, math.MaxUint32),
		}, policy(prefer("None")))
		checkInvariants(t, nil, got)
		want := []string{
			"0 alpha/us-east-a 333333 fallback",
			"0 beta/us-east-a 333334 fallback",
			"0 beta/us-east-b 333333 fallback",
		}
		if diff := cmp.Diff(want, rows(got)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("healthy above total counts as total", func(t *testing.T) {
		got := Prioritize(inAlphaA, []Candidate{counts(alphaA, 5, 2), betaA}, nil)
		checkInvariants(t, nil, got)
		if e := got.Priorities[0][0]; e.Healthy != 5 || e.Total != 5 || len(got.Priorities) != 2 {
			t.Errorf("got\n%s", got)
		}
	})
}

func TestPrioritizeIgnoresInputOrder(t *testing.T) {
	p := policy(failover(rule(region("us-east"), region("eu-west"))))
	want := Prioritize(inAlphaA, fleet, p)
	rev := make([]Candidate, len(fleet))
	for i, c := range fleet {
		rev[len(fleet)-1-i] = c
	}
	if diff := cmp.Diff(want, Prioritize(inAlphaA, rev, p)); diff != "" {
		t.Errorf("reversed input (-want +got):\n%s", diff)
	}
}

func TestPrioritizeDoesNotModifyInput(t *testing.T) {
	in := []Candidate{counts(gammaA, 5, 1), alphaA, alphaA, stale(betaA)}
	saved := append([]Candidate(nil), in...)
	p := policy(failover(rule(region("us-east"), region("eu-west"))))
	savedPolicy := *p
	Prioritize(inAlphaA, in, p)
	if diff := cmp.Diff(saved, in); diff != "" {
		t.Errorf("candidates changed (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(savedPolicy, *p); diff != "" {
		t.Errorf("policy changed (-before +after):\n%s", diff)
	}
}

func TestDistributeFromSpecificity(t *testing.T) {
	p := policy(distribute(
		dist("*", "ap-south", 100),
		dist("us-east", "ap-south", 100),
		dist("us-east/*", "ap-south", 100),
		dist("us-east/us-east-a", "ap-south", 100),
		dist("eu-west", "ap-south", 100),
		dist("*", "us-east", 100), // a second "*" loses to the first
	))
	tests := map[string]struct {
		client Client
		want   string
	}{
		"region/zone beats all":       {client: inAlphaA, want: "us-east/us-east-a"},
		"region/* beats region":       {client: Client{Region: "us-east", Zone: "us-east-b"}, want: "us-east/*"},
		"region/* matches no zone":    {client: Client{Region: "us-east"}, want: "us-east/*"},
		"region beats *":              {client: Client{Region: "eu-west", Zone: "eu-west-a"}, want: "eu-west"},
		"* for the rest, first wins":  {client: Client{Region: "ap-south"}, want: "*"},
		"* for a client of no region": {client: Client{}, want: "*"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Prioritize(tc.client, nil, p)
			if got.Distribute == nil || got.Distribute.From != tc.want || got.Distribute != &p.Distribute[slicesIndex(p, tc.want)] {
				t.Errorf("matched %+v, want from %q", got.Distribute, tc.want)
			}
		})
	}
}

// slicesIndex is the index of the first distribute rule from "from".
func slicesIndex(p *model.Policy, from string) int {
	for i, r := range p.Distribute {
		if r.From == from {
			return i
		}
	}
	return -1
}

func TestTableString(t *testing.T) {
	got := Prioritize(inAlphaA, []Candidate{counts(alphaA, 4, 10), betaA, alphaB, stale(gammaA), counts(deltaA, 0, 2)},
		policy(failover(rule(region("us-east"), region("ap-south"), cluster("gamma")))))
	want := `client:  cluster alpha, region us-east, zone us-east-a
policy:  shop/cart (localityPreference Zone, fallbackToAny true, minHealthyPercent 70)
rule:    failover from region us-east to 1. region ap-south, 2. cluster gamma

PRIORITY  CLUSTER  REGION    ZONE        HEALTHY/TOTAL  WEIGHT  SHARE%  REASON
0         alpha    us-east   us-east-a   4/10           571429  57.1    same zone (40% healthy < 70%: keeps 57.1%)
0         beta     us-east   us-east-a   4/4            428571  42.9    spill-over from priority 0 (40% healthy < 70%): same zone, other cluster
1         alpha    us-east   us-east-b   2/2            2       100.0   same cluster
2         gamma    eu-west   eu-west-a   5/5            5       100.0   demoted: stale cluster
-         delta    ap-south  ap-south-a  0/2            -       -       excluded: no healthy endpoints
`
	if diff := cmp.Diff(want, got.String()); diff != "" {
		t.Errorf("String() (-want +got):\n%s", diff)
	}

	tests := map[string]struct {
		table Table
		want  []string // lines the output must contain
	}{
		"default policy, no rule, no priorities": {
			table: Prioritize(Client{Cluster: "alpha"}, nil, nil),
			want: []string{
				"client:  cluster alpha, region -, zone -",
				"policy:  default (localityPreference Zone, fallbackToAny true, minHealthyPercent 70)",
				"rule:    none (no failover or distribute rule for this client)",
				"no priorities: the client has no endpoint to send requests to",
			},
		},
		"distribute rule": {
			table: Prioritize(inAlphaA, []Candidate{alphaA}, policy(distribute(dist("us-east/*", "eu-west", 60, "us-east", 40)))),
			want: []string{
				"rule:    distribute from us-east/*: eu-west 60%, us-east 40%",
				"0         alpha    us-east  us-east-a  3/3            400000  100.0   distribute 40% to us-east",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := tc.table.String()
			for _, line := range tc.want {
				if !strings.Contains(s, line+"\n") {
					t.Errorf("String() lacks line %q:\n%s", line, s)
				}
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Fresh: "Fresh", Stale: "Stale", Dropped: "Dropped", 7: "State(7)"} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", s, got, want)
		}
	}
}

// checkInvariants checks what the package documentation promises of every Table.
// in, when not nil, is the input: every distinct locality of it must appear exactly once.
func checkInvariants(t *testing.T, in []Candidate, got Table) {
	t.Helper()
	seen := map[Locality]string{}
	staleSeen := -1
	for p, es := range got.Priorities {
		if len(es) == 0 {
			t.Errorf("priority %d is empty", p)
		}
		var s uint64
		fresh, stale := 0, 0
		for _, e := range es {
			if e.Weight == 0 {
				t.Errorf("priority %d: %s/%s has weight 0", p, e.Cluster, e.Zone)
			}
			if e.Healthy == 0 {
				t.Errorf("priority %d: %s/%s has no healthy endpoint", p, e.Cluster, e.Zone)
			}
			if e.Reason == "" {
				t.Errorf("priority %d: %s/%s has no reason", p, e.Cluster, e.Zone)
			}
			if prev, ok := seen[e.Locality]; ok {
				t.Errorf("%+v appears twice: %s and priority %d", e.Locality, prev, p)
			}
			seen[e.Locality] = fmt.Sprintf("priority %d", p)
			s += uint64(e.Weight)
			if e.State == Stale {
				stale++
			} else {
				fresh++
			}
		}
		if s > math.MaxUint32 {
			t.Errorf("priority %d: weights sum to %d", p, s)
		}
		if stale > 0 && fresh > 0 {
			t.Errorf("priority %d mixes stale and fresh localities", p)
		}
		if stale > 0 && staleSeen < 0 {
			staleSeen = p
		}
		if fresh > 0 && staleSeen >= 0 {
			t.Errorf("priority %d has fresh localities after stale priority %d", p, staleSeen)
		}
	}
	for _, e := range got.Excluded {
		if e.Weight != 0 || e.Reason == "" {
			t.Errorf("excluded %+v: want weight 0 and a reason", e)
		}
		if prev, ok := seen[e.Locality]; ok {
			t.Errorf("%+v appears twice: %s and excluded", e.Locality, prev)
		}
		seen[e.Locality] = "excluded"
	}
	if in != nil {
		distinct := map[Locality]bool{}
		for _, c := range in {
			distinct[c.Locality] = true
		}
		if len(distinct) != len(seen) {
			t.Errorf("%d distinct localities in, %d out", len(distinct), len(seen))
		}
		for l := range distinct {
			if _, ok := seen[l]; !ok {
				t.Errorf("%+v is missing from the table", l)
			}
		}
	}
}
