package locality

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// TestPrioritizeProperties checks the package's invariants on random federations,
// clients and policies (valid or not), and that input order does not matter.
func TestPrioritizeProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(20260101, 42)) // fixed: failures reproduce
	for i := range 3000 {
		client, cands, pol := randomInput(rng)
		got := Prioritize(client, cands, pol)
		ok := t.Run(fmt.Sprint(i), func(t *testing.T) {
			checkInvariants(t, cands, got)

			shuffled := append([]Candidate(nil), cands...)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if diff := cmp.Diff(got, Prioritize(client, shuffled, pol)); diff != "" {
				t.Errorf("shuffled input gives another table (-want +got):\n%s", diff)
			}

			rendered := got.String()
			rowsWant := len(got.Excluded)
			for _, es := range got.Priorities {
				rowsWant += len(es)
			}
			// Three header lines, a blank line and the column header precede the rows.
			if n := strings.Count(rendered, "\n") - 5; n != rowsWant && len(got.Priorities) > 0 {
				t.Errorf("String() has %d rows, want %d:\n%s", n, rowsWant, rendered)
			}
		})
		if !ok {
			t.Fatalf("input: client %+v\ncandidates %+v\npolicy %+v\ntable:\n%s", client, cands, pol, got)
		}
	}
}

var (
	propRegions = []string{"r1", "r2", "r3"}
	propZones   = []string{"a", "b", ""}
)

func randomInput(rng *rand.Rand) (Client, []Candidate, *model.Policy) {
	// Clusters c0..c5, each in one region.
	nClusters := 1 + rng.IntN(6)
	regionOf := make([]string, nClusters)
	for i := range regionOf {
		regionOf[i] = pick(rng, propRegions)
	}
	var cands []Candidate
	for range rng.IntN(16) {
		c := rng.IntN(nClusters)
		total := uint32(rng.IntN(12))
		healthy := uint32(rng.IntN(int(total) + 1))
		if rng.IntN(10) == 0 {
			healthy = total + 3 // more healthy than total: counts as total
		}
		st := Fresh
		switch rng.IntN(10) {
		case 0, 1:
			st = Stale
		case 2:
			st = Dropped
		}
		cands = append(cands, Candidate{
			Locality: Locality{Cluster: fmt.Sprint("c", c), Region: regionOf[c], Zone: pick(rng, propZones), Network: "n"},
			State:    st, Healthy: healthy, Total: total,
		})
	}
	var client Client
	switch rng.IntN(4) {
	case 0: // unknown cluster
		client = Client{Cluster: "x", Region: pick(rng, propRegions), Zone: pick(rng, propZones)}
	case 1: // nothing known
	default:
		c := rng.IntN(nClusters)
		client = Client{Cluster: fmt.Sprint("c", c), Region: regionOf[c], Zone: pick(rng, propZones)}
	}
	if rng.IntN(5) == 0 {
		return client, cands, nil
	}
	pol := &model.Policy{
		Namespace:          "ns",
		Name:               "p",
		LocalityPreference: pick(rng, []string{"Zone", "Region", "None", ""}),
		FallbackToAny:      rng.IntN(2) == 0,
		MinHealthyPercent:  int32(pick(rng, []int{0, 1, 50, 70, 100, 150})),
	}
	locality := func() model.Locality {
		if rng.IntN(2) == 0 {
			return model.Locality{Region: pick(rng, append(propRegions, "r9"))}
		}
		return model.Locality{Cluster: fmt.Sprint("c", rng.IntN(nClusters+1))}
	}
	pattern := func() string {
		return pick(rng, []string{"*", "r1", "r2", "r1/*", "r2/*", "r1/a", "r2/b", "r3/a", "bad//", ""})
	}
	switch rng.IntN(3) {
	case 0:
		for range 1 + rng.IntN(3) {
			r := model.FailoverRule{From: locality()}
			for range 1 + rng.IntN(4) {
				r.To = append(r.To, locality())
			}
			pol.Failover = append(pol.Failover, r)
		}
	case 1:
		for range 1 + rng.IntN(3) {
			r := model.DistributeRule{From: pattern()}
			for range 1 + rng.IntN(4) {
				r.To = append(r.To, model.WeightedLocality{Locality: pattern(), Weight: int32(rng.IntN(60))})
			}
			pol.Distribute = append(pol.Distribute, r)
		}
	}
	return client, cands, pol
}

func pick[T any](rng *rand.Rand, from []T) T { return from[rng.IntN(len(from))] }
