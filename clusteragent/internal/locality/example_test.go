package locality_test

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/clusteragent/internal/locality"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// The worked example of docs/failover.md: three clusters in two regions, a client in
// alpha's zone us-east-a, and a policy that fails us-east over to eu-west.
func Example() {
	loc := func(cluster, region, zone string, healthy, total uint32) locality.Candidate {
		return locality.Candidate{
			Locality: locality.Locality{Cluster: cluster, Region: region, Zone: zone, Network: cluster},
			Healthy:  healthy,
			Total:    total,
		}
	}
	candidates := []locality.Candidate{
		loc("alpha", "us-east", "us-east-a", 2, 5),
		loc("alpha", "us-east", "us-east-b", 4, 4),
		loc("beta", "us-east", "us-east-a", 3, 3),
		loc("beta", "us-east", "us-east-b", 3, 3),
		loc("gamma", "eu-west", "eu-west-a", 6, 6),
		loc("gamma", "eu-west", "eu-west-b", 0, 4),
	}
	policy := &model.Policy{
		Namespace:          "shop",
		Name:               "cart",
		LocalityPreference: "Zone",
		FallbackToAny:      true,
		MinHealthyPercent:  70,
		FailbackHold:       metav1.Duration{Duration: 30 * time.Second},
		DemoteAfter:        metav1.Duration{Duration: 30 * time.Second},
		DropAfter:          metav1.Duration{Duration: 10 * time.Minute},
		Failover: []model.FailoverRule{{
			From: model.Locality{Region: "us-east"},
			To:   []model.Locality{{Region: "eu-west"}},
		}},
	}
	client := locality.Client{Cluster: "alpha", Region: "us-east", Zone: "us-east-a"}
	fmt.Print(locality.Prioritize(client, candidates, policy))

	// beta's heartbeat lapses for longer than demoteAfter.
	for i := range candidates {
		if candidates[i].Cluster == "beta" {
			candidates[i].State = locality.Stale
		}
	}
	fmt.Println()
	fmt.Print(locality.Prioritize(client, candidates, policy))
	// Output:
	// client:  cluster alpha, region us-east, zone us-east-a
	// policy:  shop/cart (localityPreference Zone, fallbackToAny true, minHealthyPercent 70)
	// rule:    failover from region us-east to 1. region eu-west
	//
	// PRIORITY  CLUSTER  REGION   ZONE       HEALTHY/TOTAL  WEIGHT  SHARE%  REASON
	// 0         alpha    us-east  us-east-a  2/5            571429  57.1    same zone (40% healthy < 70%: keeps 57.1%)
	// 0         beta     us-east  us-east-a  3/3            428571  42.9    spill-over from priority 0 (40% healthy < 70%): same zone, other cluster
	// 1         alpha    us-east  us-east-b  4/4            4       100.0   same cluster
	// 2         beta     us-east  us-east-b  3/3            3       100.0   same region
	// 3         gamma    eu-west  eu-west-a  6/6            6       100.0   failover target 1: region eu-west
	// -         gamma    eu-west  eu-west-b  0/4            -       -       excluded: no healthy endpoints
	//
	// client:  cluster alpha, region us-east, zone us-east-a
	// policy:  shop/cart (localityPreference Zone, fallbackToAny true, minHealthyPercent 70)
	// rule:    failover from region us-east to 1. region eu-west
	//
	// PRIORITY  CLUSTER  REGION   ZONE       HEALTHY/TOTAL  WEIGHT  SHARE%  REASON
	// 0         alpha    us-east  us-east-a  2/5            571429  57.1    same zone (40% healthy < 70%: keeps 57.1%)
	// 0         alpha    us-east  us-east-b  4/4            428571  42.9    spill-over from priority 0 (40% healthy < 70%): same cluster
	// 1         gamma    eu-west  eu-west-a  6/6            6       100.0   failover target 1: region eu-west
	// 2         beta     us-east  us-east-a  3/3            3       50.0    demoted: stale cluster
	// 2         beta     us-east  us-east-b  3/3            3       50.0    demoted: stale cluster
	// -         gamma    eu-west  eu-west-b  0/4            -       -       excluded: no healthy endpoints
}
