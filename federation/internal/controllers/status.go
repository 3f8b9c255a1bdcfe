package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
)

// setConditions sets conds on a status's conditions, each stamped with gen: the
// generation the status is computed for.
func setConditions(into *[]metav1.Condition, gen int64, conds ...metav1.Condition) {
	for _, c := range conds {
		c.ObservedGeneration = gen
		meta.SetStatusCondition(into, c)
	}
}

// writeStatus is the end of every reconcile: when next differs from cur (obj's status
// as read), it puts next into obj and writes obj's status subresource, and reports
// whether it wrote. A conflict is not an error and writes nothing: obj changed since
// it was read, and the reconcile that change triggers computes status again.
func writeStatus[S any](ctx context.Context, c client.Client, obj client.Object, cur, next *S) (bool, error) {
	if equality.Semantic.DeepEqual(next, cur) {
		return false, nil
	}
	*cur = *next
	if err := c.Status().Update(ctx, obj); err != nil {
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// eventAction is the action of the reconcilers' Events: the events API requires one.
const eventAction = "Reconcile"

// transitions returns the conditions of next whose change from prev worth says an
// operator wants to hear of.
func transitions(prev, next []metav1.Condition, worth map[string]func(prev *metav1.Condition, next metav1.Condition) bool) []metav1.Condition {
	var out []metav1.Condition
	for _, c := range next {
		if w := worth[c.Type]; w != nil && w(meta.FindStatusCondition(prev, c.Type), c) {
			out = append(out, c)
		}
	}
	return out
}

// becameOrStoppedTrue: the condition turned True or stopped being True. A condition
// that first appears False (a cluster registered before its agent runs) is no news.
func becameOrStoppedTrue(prev *metav1.Condition, next metav1.Condition) bool {
	was := prev != nil && prev.Status == metav1.ConditionTrue
	return was != (next.Status == metav1.ConditionTrue)
}

// problemOrRecovery: the condition appeared not True, or its status or reason changed.
func problemOrRecovery(prev *metav1.Condition, next metav1.Condition) bool {
	if prev == nil {
		return next.Status != metav1.ConditionTrue
	}
	return prev.Status != next.Status || prev.Reason != next.Reason
}

// trueIsProblem are the condition types whose True status is the problem.
var trueIsProblem = map[string]bool{v1.ConditionHostnameConflict: true}

// announce emits one Event on obj per condition in ts (see transitions): Normal for a
// condition in its good state (True, or False for trueIsProblem), Warning otherwise,
// with the condition's reason and message. Call it only
// after the status holding the transitions was written, so that a repeated reconcile
// (a conflict, a requeue) does not repeat the Events. rec may be nil: no Events.
func announce(rec events.EventRecorder, obj runtime.Object, ts []metav1.Condition) {
	if rec == nil {
		return
	}
	for _, t := range ts {
		good := t.Status == metav1.ConditionTrue
		if trueIsProblem[t.Type] {
			good = t.Status == metav1.ConditionFalse
		}
		typ := corev1.EventTypeWarning
		if good {
			typ = corev1.EventTypeNormal
		}
		rec.Eventf(obj, nil, typ, t.Reason, eventAction, "%s: %s", t.Type, t.Message)
	}
}
