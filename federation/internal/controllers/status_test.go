package controllers

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
)

// Events go out on the transitions an operator cares about, not on every reconcile.
func TestTransitions(t *testing.T) {
	connected := func(s metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: v1.ConditionConnected, Status: s, Reason: reason}}
	}
	refs := func(s metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: v1.ConditionResolvedRefs, Status: s, Reason: reason}}
	}
	T, F := metav1.ConditionTrue, metav1.ConditionFalse
	tests := map[string]struct {
		prev, next []metav1.Condition
		worth      map[string]func(*metav1.Condition, metav1.Condition) bool
		want       []string // reasons
	}{
		"registered, agent not yet up":  {nil, connected(F, v1.ReasonNoHeartbeat), clusterEvents, nil},
		"first connection":              {connected(F, v1.ReasonNoHeartbeat), connected(T, v1.ReasonHeartbeatLive), clusterEvents, []string{v1.ReasonHeartbeatLive}},
		"still connected":               {connected(T, v1.ReasonHeartbeatLive), connected(T, v1.ReasonHeartbeatLive), clusterEvents, nil},
		"connection lost":               {connected(T, v1.ReasonHeartbeatLive), connected(F, v1.ReasonHeartbeatLapsed), clusterEvents, []string{v1.ReasonHeartbeatLapsed}},
		"still lost":                    {connected(F, v1.ReasonHeartbeatLapsed), connected(F, v1.ReasonHeartbeatLapsed), clusterEvents, nil},
		"connection regained":           {connected(F, v1.ReasonHeartbeatLapsed), connected(T, v1.ReasonHeartbeatLive), clusterEvents, []string{v1.ReasonHeartbeatLive}},
		"new object resolves":           {nil, refs(T, v1.ReasonResolvedRefs), refsEvents, nil},
		"new object does not resolve":   {nil, refs(F, v1.ReasonPolicyNotFound), refsEvents, []string{v1.ReasonPolicyNotFound}},
		"still unresolved":              {refs(F, v1.ReasonPolicyNotFound), refs(F, v1.ReasonPolicyNotFound), refsEvents, nil},
		"unresolved for another reason": {refs(F, v1.ReasonUnknownCluster), refs(F, v1.ReasonUnmatchedLocality), refsEvents, []string{v1.ReasonUnmatchedLocality}},
		"resolved again":                {refs(F, v1.ReasonUnknownCluster), refs(T, v1.ReasonResolvedRefs), refsEvents, []string{v1.ReasonResolvedRefs}},
		"other conditions are no news":  {nil, refs(F, v1.ReasonPolicyNotFound), clusterEvents, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, c := range transitions(tc.prev, tc.next, tc.worth) {
				got = append(got, c.Reason)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("transitions (-want +got):\n%s", diff)
			}
		})
	}
}
