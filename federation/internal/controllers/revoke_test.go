package controllers

import (
	"errors"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// A MeshCluster's etcd user is its registration's; revoking it deletes that user and
// the cluster's records and says so (Registered False, reason Revoked, a Warning
// Event); registering it again (a new registration) makes only the new user, and a
// cluster registered before registrations existed loses its old user once it gets a
// registration.
func TestRevokeAndRegisterAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	checkLeaks(t)
	e := newHubEnv(t)
	e.startManager()

	users := func(t *testing.T) []string {
		t.Helper()
		l, err := e.etcd.UserList(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return l.Users
	}
	registered := func(mc *v1.MeshCluster) (bool, string) {
		return all(finalized(mc), cond(mc.Status.Conditions, v1.ConditionRegistered, metav1.ConditionTrue, v1.ReasonRegistered, mc.Generation))
	}

	// Registered before registrations existed: the user named like the role.
	mc := meshCluster("rev-1", "us-east", "us-east-1a")
	e.create(t, mc)
	waitObject(t, e, mc, "rev-1 registered", registered)
	if got, want := users(t), []string{hubinfo.EtcdRole("rev-1")}; !slices.Equal(got, want) {
		t.Fatalf("users %v, want %v", got, want)
	}

	first := hubinfo.NewRegistration()
	update(t, e, mc, func(mc *v1.MeshCluster) { mc.Spec.Registration = first })
	waitObject(t, e, mc, "rev-1 registered with a registration", registered)
	if got, want := users(t), []string{hubinfo.EtcdUser("rev-1", first)}; !slices.Equal(got, want) {
		t.Errorf("users %v, want only the registration's %v", got, want)
	}
	e.waitRecord(t, keyspace.ClusterInfo("rev-1"), &model.ClusterInfo{Name: "rev-1", Region: "us-east",
		Zones: []string{"us-east-1a"}, Network: v1.DefaultNetwork, Limits: defaultLimits, Registration: first})
	e.put(t, keyspace.ClusterSynced("rev-1"), &model.Synced{SyncedAt: time.Now()})

	update(t, e, mc, func(mc *v1.MeshCluster) { mc.Spec.Revoked = true })
	waitObject(t, e, mc, "rev-1 revoked", func(mc *v1.MeshCluster) (bool, string) {
		return all(cond(mc.Status.Conditions, v1.ConditionRegistered, metav1.ConditionFalse, v1.ReasonRevoked, mc.Generation))
	})
	if got := users(t); len(got) != 0 {
		t.Errorf("users %v after revocation, want none", got)
	}
	if _, err := e.etcd.RoleGet(e.ctx, hubinfo.EtcdRole("rev-1")); !errors.Is(err, rpctypes.ErrRoleNotFound) {
		t.Errorf("role after revocation: %v, want not found", err)
	}
	e.waitGone(t, keyspace.ClusterPrefix("rev-1"))
	e.waitEvent(t, mc, corev1.EventTypeWarning, v1.ReasonRevoked)

	again := hubinfo.NewRegistration()
	update(t, e, mc, func(mc *v1.MeshCluster) { mc.Spec.Registration, mc.Spec.Revoked = again, false })
	waitObject(t, e, mc, "rev-1 registered again", registered)
	if got, want := users(t), []string{hubinfo.EtcdUser("rev-1", again)}; !slices.Equal(got, want) {
		t.Errorf("users %v, want only the new registration's %v", got, want)
	}
	e.waitEvent(t, mc, corev1.EventTypeNormal, v1.ReasonRegistered)
	e.waitRecord(t, keyspace.ClusterInfo("rev-1"), &model.ClusterInfo{Name: "rev-1", Region: "us-east",
		Zones: []string{"us-east-1a"}, Network: v1.DefaultNetwork, Limits: defaultLimits, Registration: again})

	e.deleteAndWait(t, mc)
	if got := users(t); len(got) != 0 {
		t.Errorf("users %v after unregistering, want none", got)
	}
}
