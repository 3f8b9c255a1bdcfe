package controllers

import (
	"bytes"
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// KV is the part of the etcd client the reconcilers use.
type KV interface {
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
	Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error)
	Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error)
}

// putRecord writes rec at key unless etcd already holds exactly that value.
func putRecord(ctx context.Context, kv KV, key string, rec model.Record) error {
	val, err := model.Encode(rec)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	cur, err := kv.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	if len(cur.Kvs) == 1 && bytes.Equal(cur.Kvs[0].Value, val) {
		return nil
	}
	if _, err := kv.Put(ctx, key, string(val)); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

func deleteKey(ctx context.Context, kv KV, key string, opts ...clientv3.OpOption) error {
	if _, err := kv.Delete(ctx, key, opts...); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// writeRecord puts rec at key (putRecord) and returns the Accepted condition that says
// how it went, with putRecord's error.
func writeRecord(ctx context.Context, kv KV, key string, rec model.Record) (metav1.Condition, error) {
	accepted := metav1.Condition{Type: v1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: v1.ReasonAccepted,
		Message: "written to the hub's etcd"}
	err := putRecord(ctx, kv, key, rec)
	if err != nil {
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, v1.ReasonEtcdError, err.Error()
	}
	return accepted, err
}
