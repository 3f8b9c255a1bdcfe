package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// The hub's side of issue 10: what the hub lets a GlobalService claim. A hostname
// whose gateway server name does not fit 255 bytes once made every gateway refuse its
// whole configuration; two GlobalServices claiming one hostname met at the agents,
// where the first by name won silently.

func init() {
	addAttack("hostname: a 240-character hostname is rejected by validation", func(t *testing.T, w *attackWorld) {
		long := strings.Repeat(strings.Repeat("h", 63)+".", 3) + strings.Repeat("h", 48)
		if len(long) != 240 {
			t.Fatalf("hostname of %d characters, want 240", len(long))
		}
		gs := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "long-hostname"}, Spec: v1.GlobalServiceSpec{
			Hostname: long, Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}}}}
		err := w.hub.Create(w.ctx, gs)
		if err == nil {
			t.Cleanup(func() { _ = w.hub.Delete(w.ctx, gs) })
			t.Fatal("the hub's API server accepted a GlobalService whose gateway server name exceeds 255 bytes")
		}
		t.Logf("rejected: %v", err)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.hostname") || !strings.Contains(err.Error(), "255 bytes") {
			t.Errorf("error %v, want an Invalid error on spec.hostname saying the server name must fit 255 bytes", err)
		}
	})

	addAttack("hostname: a conflict is reported and the first owner keeps serving", func(t *testing.T, w *attackWorld) {
		const hostname = "cart.shop.svc.clusterset.local" // shop/cart's, by default
		alpha := w.s.Cluster("alpha")
		zone := alpha.Zones[0]
		home := "alpha/" + zone
		conn := w.client(t, "alpha", hostname+":8080") // in alpha's first zone
		landsOn(t, w.ctx, conn, home)

		// The claimant is younger than shop/cart by at least a second, so that age
		// decides; by name it would sort first.
		cart := &v1.GlobalService{}
		if err := w.hub.Get(w.ctx, client.ObjectKey{Namespace: "shop", Name: "cart"}, cart); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, "a second after shop/cart's creation", testutil.Check(func() (bool, string) {
			return time.Now().Truncate(time.Second).After(cart.CreationTimestamp.Time), "same second"
		}))
		hijack := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "a-hijack"}, Spec: v1.GlobalServiceSpec{
			Hostname: hostname,
			Service:  &v1.ServiceReference{Name: "decoy"}, // published nowhere: served, it would blackhole the callers
			Ports:    []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}},
		}}
		if err := w.hub.Create(w.ctx, hijack); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = w.hub.Delete(w.ctx, hijack)
			testutil.Eventually(t, waitLong, "a-hijack to go", testutil.Check(func() (bool, string) {
				err := w.hub.Get(w.ctx, client.ObjectKeyFromObject(hijack), &v1.GlobalService{})
				return apierrors.IsNotFound(err), fmt.Sprintf("still there: %v", err)
			}))
		})

		testutil.Eventually(t, waitLong, "a-hijack reported in conflict with shop/cart", testutil.Check(func() (bool, string) {
			gs := &v1.GlobalService{}
			if err := w.hub.Get(w.ctx, client.ObjectKeyFromObject(hijack), gs); err != nil {
				return false, err.Error()
			}
			c := meta.FindStatusCondition(gs.Status.Conditions, v1.ConditionHostnameConflict)
			if c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1.ReasonHostnameInUse || !strings.Contains(c.Message, "shop/cart") {
				return false, fmt.Sprintf("HostnameConflict %+v, want True/%s naming shop/cart", c, v1.ReasonHostnameInUse)
			}
			if meta.IsStatusConditionTrue(gs.Status.Conditions, v1.ConditionAccepted) {
				return false, "a-hijack is Accepted"
			}
			return true, ""
		}))
		testutil.Eventually(t, waitLong, "a Warning Event on a-hijack", func() error {
			list := &eventsv1.EventList{}
			if err := w.hub.List(w.ctx, list, client.InNamespace("shop")); err != nil {
				return err
			}
			for _, ev := range list.Items {
				if ev.Regarding.Name == "a-hijack" && ev.Type == corev1.EventTypeWarning && ev.Reason == v1.ReasonHostnameInUse {
					return nil
				}
			}
			return fmt.Errorf("no Warning %s Event on a-hijack among %d", v1.ReasonHostnameInUse, len(list.Items))
		})
		cartOwner := &v1.GlobalService{}
		if err := w.hub.Get(w.ctx, client.ObjectKey{Namespace: "shop", Name: "cart"}, cartOwner); err != nil {
			t.Fatal(err)
		}
		if c := meta.FindStatusCondition(cartOwner.Status.Conditions, v1.ConditionHostnameConflict); c == nil || c.Status != metav1.ConditionFalse {
			t.Errorf("shop/cart's HostnameConflict %+v, want False: it owns the hostname", c)
		}

		// No agent serves the claimant: the hub never wrote it.
		for _, c := range w.s.Clusters {
			v, err := agentView(w.ctx, c.DebugAddr)
			if err != nil {
				t.Fatal(err)
			}
			if slices.ContainsFunc(v.GlobalServices, func(g model.GlobalService) bool { return g.Name == "a-hijack" }) {
				t.Errorf("%s's agent serves shop/a-hijack", c.Name)
			}
		}
		// Where calls land is unchanged.
		landed, failed := send(w.ctx, conn, 200)
		t.Logf("200 calls from %s after the claim: %v, %d failed", home, landed, failed)
		if landed[home] != 200 || failed != 0 {
			t.Errorf("calls landed %v with %d failures; want all 200 on %s, the first owner's backends", landed, failed, home)
		}
	})
}
