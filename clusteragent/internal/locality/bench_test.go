package locality

import (
	"fmt"
	"testing"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// benchFleet returns one service's localities in nClusters clusters spread over 5
// regions, zones per cluster, 10 endpoints each; every 7th locality is 40% healthy and
// every 13th cluster is stale, so spill-over and demotion are exercised.
func benchFleet(nClusters, zones int) []Candidate {
	cands := make([]Candidate, 0, nClusters*zones)
	for c := range nClusters {
		region := fmt.Sprintf("region-%d", c%5)
		for z := range zones {
			cand := Candidate{
				Locality: Locality{
					Cluster: fmt.Sprintf("cluster-%03d", c),
					Region:  region,
					Zone:    fmt.Sprintf("%s-%c", region, 'a'+z),
					Network: fmt.Sprintf("net-%03d", c),
				},
				Healthy: 10,
				Total:   10,
			}
			if len(cands)%7 == 0 {
				cand.Healthy = 4
			}
			if c%13 == 12 {
				cand.State = Stale
			}
			cands = append(cands, cand)
		}
	}
	return cands
}

var (
	benchClient = Client{Cluster: "cluster-000", Region: "region-0", Zone: "region-0-a"}
	benchPolicy = &model.Policy{
		Namespace: "shop", Name: "cart",
		LocalityPreference: PreferZone, FallbackToAny: true, MinHealthyPercent: 70,
		Failover: []model.FailoverRule{
			{From: model.Locality{Region: "region-0"}, To: []model.Locality{{Region: "region-1"}, {Cluster: "cluster-002"}}},
		},
	}
	benchSink Table
)

// BenchmarkPrioritize: one client, one service of 100 clusters × 2 zones.
func BenchmarkPrioritize(b *testing.B) {
	cands := benchFleet(100, 2)
	b.ReportAllocs()
	for b.Loop() {
		benchSink = Prioritize(benchClient, cands, benchPolicy)
	}
}

// BenchmarkPrioritizeFleet: one client locality, 100 services each in 100 clusters
// (one zone, 10 endpoints each): one op is the 100 calls an xDS server makes to build
// that locality's EDS.
func BenchmarkPrioritizeFleet(b *testing.B) {
	services := make([][]Candidate, 100)
	for i := range services {
		services[i] = benchFleet(100, 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, cands := range services {
			benchSink = Prioritize(benchClient, cands, benchPolicy)
		}
	}
}

// BenchmarkPrioritizeDistribute: BenchmarkPrioritize's service under a distribute rule.
func BenchmarkPrioritizeDistribute(b *testing.B) {
	cands := benchFleet(100, 2)
	pol := &model.Policy{
		Namespace: "shop", Name: "cart",
		LocalityPreference: PreferZone, FallbackToAny: true, MinHealthyPercent: 70,
		Distribute: []model.DistributeRule{{From: "region-0/*", To: []model.WeightedLocality{
			{Locality: "region-0", Weight: 60}, {Locality: "region-1/*", Weight: 30}, {Locality: "region-2/region-2-a", Weight: 10},
		}}},
	}
	b.ReportAllocs()
	for b.Loop() {
		benchSink = Prioritize(benchClient, cands, pol)
	}
}
