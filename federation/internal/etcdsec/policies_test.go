package etcdsec_test

import (
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

// Traffic and authorization policies are the hub's: an agent reads them (its proxies
// are programmed from them) and may neither write nor delete them, one by one, by
// prefix or in a transaction. An agent that could would open its services to anyone.
func TestAgentsReadPoliciesButCannotWriteThem(t *testing.T) {
	h, root := withAuth(t)
	ctx := testContext(t)
	ensureCluster(t, root, "alpha")
	keys := []string{keyspace.TrafficPolicy("shop", "cart"), keyspace.AuthorizationPolicy("shop", "frontend-only")}
	for _, k := range keys {
		mustPut(t, root, k, "the hub's")
	}
	alpha := h.client(t, hubinfo.EtcdUser("alpha", reg))

	for _, prefix := range []string{keyspace.TrafficPoliciesPrefix(), keyspace.AuthorizationPoliciesPrefix()} {
		resp, err := alpha.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			t.Fatalf("agent Get %s: %v", prefix, err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "the hub's" {
			t.Errorf("agent Get %s = %v, want the hub's one record", prefix, resp.Kvs)
		}
	}
	for _, key := range append(keys, keyspace.TrafficPolicy("shop", "new"), keyspace.AuthorizationPolicy("shop", "allow-all")) {
		_, err := alpha.Put(ctx, key, "forged")
		wantDenied(t, "Put "+key, err)
		_, err = alpha.Delete(ctx, key)
		wantDenied(t, "Delete "+key, err)
		_, err = alpha.Txn(ctx).Then(clientv3.OpPut(key, "forged")).Commit()
		wantDenied(t, "Txn Put "+key, err)
	}
	for _, prefix := range []string{keyspace.TrafficPoliciesPrefix(), keyspace.AuthorizationPoliciesPrefix()} {
		_, err := alpha.Delete(ctx, prefix, clientv3.WithPrefix())
		wantDenied(t, "Delete prefix "+prefix, err)
	}
	for _, k := range keys {
		resp, err := root.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "the hub's" {
			t.Errorf("%s = %v after refused writes", k, resp.Kvs)
		}
	}
}
