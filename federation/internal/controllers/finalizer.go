package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// finalize runs the part every reconciler shares: an object being deleted has remove
// run (its etcd state deleted) and then its finalizer taken off; any other object gets
// the finalizer. done says the reconcile is over (the object is going); err is to be
// returned as is.
func finalize(ctx context.Context, c client.Client, obj client.Object, remove func() error) (done bool, err error) {
	if !obj.GetDeletionTimestamp().IsZero() {
		if err := remove(); err != nil {
			return true, err
		}
		controllerutil.RemoveFinalizer(obj, Finalizer)
		return true, client.IgnoreNotFound(c.Update(ctx, obj))
	}
	if controllerutil.AddFinalizer(obj, Finalizer) {
		if err := c.Update(ctx, obj); err != nil {
			return true, err
		}
	}
	return false, nil
}
