package etcdsec_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/meshfed/meshfed/federation/internal/etcdsec"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// waitFor bounds every call and every wait: generous, since a loaded 2-core machine
// can stall a TLS handshake or a raft round for seconds.
const waitFor = 30 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	t.Cleanup(cancel)
	return ctx
}

// hubEtcd is a real etcd as the hub runs it: TLS for clients, a client certificate
// required, and the common name of that certificate as the etcd user.
type hubEtcd struct {
	ca        *pki.CA
	endpoints []string
	server    *embedetcd.Server
}

func startEtcd(t *testing.T, grpcOpts ...grpc.ServerOption) *hubEtcd {
	t.Helper()
	ca, err := pki.NewCA("test-hub-etcd-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM, keyPEM, err := ca.Issue(pki.ServerTemplate("etcd", "localhost", "127.0.0.1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.crt": ca.CertPEM, "server.crt": certPEM, "server.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := embedetcd.Start(testContext(t), embedetcd.Options{
		DataDir: filepath.Join(dir, "data"),
		ClientTLS: &embedetcd.TLS{
			CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
			TrustedCAFile: filepath.Join(dir, "ca.crt"), ClientCertAuth: true,
		},
		UnsafeNoFsync:     true,
		ZapLogger:         zap.NewNop(),
		GRPCServerOptions: grpcOpts,
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(srv.Close)
	return &hubEtcd{ca: ca, endpoints: srv.Endpoints(), server: srv}
}

// client connects as user: a client certificate from the CA etcd trusts, with user as
// its common name. User "" gets a certificate without one.
func (h *hubEtcd) client(t *testing.T, user string) *clientv3.Client {
	t.Helper()
	certPEM, keyPEM, err := h.ca.Issue(pki.ClientTemplate(user), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := etcdconn.New(context.Background(), etcdconn.Credentials{
		Endpoints: h.endpoints, CA: h.ca.CertPEM, Cert: certPEM, Key: keyPEM,
	})
	if err != nil {
		t.Fatalf("etcd client as %q: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// withAuth starts etcd, enables auth and returns the hub's root client.
func withAuth(t *testing.T) (*hubEtcd, *clientv3.Client) {
	t.Helper()
	h := startEtcd(t)
	root := h.client(t, etcdsec.RootUser)
	if err := etcdsec.EnableAuth(testContext(t), root.Auth); err != nil {
		t.Fatalf("EnableAuth: %v", err)
	}
	return h, root
}

// reg is the registration of every cluster of these tests but where one says otherwise.
var reg = hubinfo.NewRegistration()

func ensureCluster(t *testing.T, root *clientv3.Client, cluster string) {
	t.Helper()
	ensureRegistration(t, root, cluster, reg)
}

func ensureRegistration(t *testing.T, root *clientv3.Client, cluster, registration string) {
	t.Helper()
	if err := etcdsec.EnsureCluster(testContext(t), root.Auth, cluster, registration); err != nil {
		t.Fatalf("EnsureCluster(%s): %v", cluster, err)
	}
}

func mustPut(t *testing.T, c *clientv3.Client, key, val string, opts ...clientv3.OpOption) {
	t.Helper()
	if _, err := c.Put(testContext(t), key, val, opts...); err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("%s: error %v, want etcd's permission denied", what, err)
	}
}

// EnableAuth turns on etcd's authentication, once: running it again changes nothing,
// and afterwards a client whose certificate names no etcd user may do nothing.
func TestEnableAuthIsIdempotentAndRefusesUnknownUsers(t *testing.T) {
	h := startEtcd(t)
	ctx := testContext(t)
	root := h.client(t, etcdsec.RootUser)
	nobody := h.client(t, "nobody")
	anonymous := h.client(t, "")

	// Before auth, any certificate from the trusted CA may write.
	mustPut(t, nobody, "/meshfed/v1/trust/bundle", "before auth")

	for i := range 2 {
		if err := etcdsec.EnableAuth(ctx, root.Auth); err != nil {
			t.Fatalf("EnableAuth #%d: %v", i+1, err)
		}
	}
	st, err := root.AuthStatus(ctx)
	if err != nil || !st.Enabled {
		t.Fatalf("AuthStatus = %v, %v; want enabled", st, err)
	}
	users, err := root.UserList(ctx)
	if err != nil {
		t.Fatalf("UserList: %v", err)
	}
	if !slices.Equal(users.Users, []string{etcdsec.RootUser}) {
		t.Errorf("users %v, want only %s", users.Users, etcdsec.RootUser)
	}
	u, err := root.UserGet(ctx, etcdsec.RootUser)
	if err != nil || !slices.Equal(u.Roles, []string{etcdsec.RootUser}) {
		t.Errorf("root user = %v, %v; want role %s only", u, err, etcdsec.RootUser)
	}

	// The hub, as root, may still do everything.
	mustPut(t, root, "/meshfed/v1/trust/bundle", "after auth")

	// A certificate from the trusted CA is not enough any more.
	_, err = nobody.Put(ctx, "/meshfed/v1/trust/bundle", "x")
	wantDenied(t, "unknown user Put", err)
	_, err = nobody.Get(ctx, keyspace.Root, clientv3.WithPrefix())
	wantDenied(t, "unknown user Get", err)
	if _, err := anonymous.Get(ctx, keyspace.Root, clientv3.WithPrefix()); !errors.Is(err, rpctypes.ErrUserEmpty) && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("Get with a certificate without a common name: %v, want refused", err)
	}
	if _, err := nobody.UserAdd(ctx, "intruder", "secret"); err == nil {
		t.Error("unknown user added a user")
	}
	if _, err := nobody.AuthDisable(ctx); err == nil {
		t.Error("unknown user disabled auth")
	}
}

// With cluster A's etcd credentials, a write under cluster B's prefix is refused by
// etcd — and so is every other write outside A's own heartbeat, synced marker and
// services, including A's own registration record, which the hub owns.
func TestClusterACredentialsCannotWriteUnderClusterBPrefix(t *testing.T) {
	h, root := withAuth(t)
	ctx := testContext(t)
	for _, c := range []string{"alpha", "beta", "alpha-2"} {
		ensureCluster(t, root, c)
	}
	// Keys the hub and the other clusters own, so that deletes have something to refuse.
	for _, k := range []string{
		keyspace.ClusterInfo("alpha"), keyspace.ClusterInfo("beta"), keyspace.ClusterHeartbeat("beta"),
		keyspace.ServiceEndpoints("beta", "shop", "cart"), keyspace.GlobalService("shop", "cart"),
	} {
		mustPut(t, root, k, "owned by someone else")
	}
	alpha := h.client(t, hubinfo.EtcdUser("alpha", reg))

	for name, key := range map[string]string{
		"cluster B's services":             keyspace.ServiceEndpoints("beta", "shop", "cart"),
		"cluster B's new service":          keyspace.ServiceEndpoints("beta", "shop", "new"),
		"cluster B's heartbeat":            keyspace.ClusterHeartbeat("beta"),
		"cluster B's synced marker":        keyspace.ClusterSynced("beta"),
		"cluster B's info":                 keyspace.ClusterInfo("beta"),
		"own info (the hub's)":             keyspace.ClusterInfo("alpha"),
		"own etcd cert (the hub's)":        keyspace.ClusterEtcdCert("alpha"),
		"cluster B's etcd CSR":             keyspace.ClusterEtcdCSR("beta"),
		"cluster B's programmed report":    keyspace.ClusterProgrammed("beta"),
		"own prefix, outside the layout":   keyspace.ClusterPrefix("alpha") + "other",
		"own heartbeat key plus a suffix":  keyspace.ClusterHeartbeat("alpha") + "-x",
		"prefix-sharing cluster's service": keyspace.ServiceEndpoints("alpha-2", "shop", "cart"),
		"global service":                   keyspace.GlobalService("shop", "cart"),
		"policy":                           keyspace.Policy("shop", "p"),
		"trust bundle":                     keyspace.TrustBundle(),
		"outside meshfed's keyspace":       "/elsewhere",
	} {
		_, err := alpha.Put(ctx, key, "forged")
		wantDenied(t, "Put "+name, err)
		_, err = alpha.Delete(ctx, key)
		wantDenied(t, "Delete "+name, err)
		_, err = alpha.Txn(ctx).Then(clientv3.OpPut(key, "forged")).Commit()
		wantDenied(t, "Txn Put "+name, err)
	}
	// A range that covers A's own keys and the hub's is refused as a whole.
	_, err := alpha.Delete(ctx, keyspace.ClusterPrefix("alpha"), clientv3.WithPrefix())
	wantDenied(t, "Delete own prefix (covers info)", err)
	_, err = alpha.Delete(ctx, keyspace.ClustersPrefix(), clientv3.WithPrefix())
	wantDenied(t, "Delete every cluster", err)

	// A lease of A's cannot carry a key of B's either.
	lease, err := alpha.Grant(ctx, 60)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	_, err = alpha.Put(ctx, keyspace.ClusterHeartbeat("beta"), "forged", clientv3.WithLease(lease.ID))
	wantDenied(t, "Put B's heartbeat with a lease", err)

	// Nothing changed.
	resp, err := root.Get(ctx, keyspace.Root, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) != "owned by someone else" {
			t.Errorf("%s = %q after refused writes", kv.Key, kv.Value)
		}
	}
	if resp.Count != 5 {
		t.Errorf("%d keys after refused writes, want the 5 written by root", resp.Count)
	}
}

// A cluster's user writes its own heartbeat (under a lease), synced marker and
// services, and reads everything under /meshfed/v1/, by Get and by Watch.
func TestClusterWritesOwnKeysAndReadsEveryone(t *testing.T) {
	h, root := withAuth(t)
	ctx := testContext(t)
	ensureCluster(t, root, "alpha")
	ensureCluster(t, root, "beta")
	alpha := h.client(t, hubinfo.EtcdUser("alpha", reg))

	// Heartbeat under a lease, as the agent's writer does: grant, keep alive, put,
	// revoke (which deletes the heartbeat).
	lease, err := alpha.Grant(ctx, 60)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	if _, err := alpha.KeepAliveOnce(ctx, lease.ID); err != nil {
		t.Fatalf("KeepAliveOnce: %v", err)
	}
	mustPut(t, alpha, keyspace.ClusterHeartbeat("alpha"), "alive", clientv3.WithLease(lease.ID))
	mustPut(t, alpha, keyspace.ClusterSynced("alpha"), "1", clientv3.WithLease(lease.ID))
	svc := keyspace.ServiceEndpoints("alpha", "shop", "cart")
	mustPut(t, alpha, svc, "endpoints", clientv3.WithLease(lease.ID))
	mustPut(t, alpha, keyspace.ServiceEndpoints("alpha", "shop", "other"), "endpoints")
	if _, err := alpha.Txn(ctx).Then(clientv3.OpPut(keyspace.ServiceEndpoints("alpha", "ns", "a"), "x"),
		clientv3.OpDelete(keyspace.ServiceEndpoints("alpha", "ns", "b"))).Commit(); err != nil {
		t.Errorf("Txn on own services: %v", err)
	}
	if _, err := alpha.Delete(ctx, keyspace.ServiceEndpoints("alpha", "shop", "other")); err != nil {
		t.Errorf("Delete own service: %v", err)
	}
	if _, err := alpha.Delete(ctx, keyspace.ClusterServices("alpha"), clientv3.WithPrefix()); err != nil {
		t.Errorf("Delete all own services: %v", err)
	}
	mustPut(t, alpha, svc, "endpoints", clientv3.WithLease(lease.ID))
	// The renewal CSR of its own etcd certificate.
	mustPut(t, alpha, keyspace.ClusterEtcdCSR("alpha"), "csr")
	if _, err := alpha.Delete(ctx, keyspace.ClusterEtcdCSR("alpha")); err != nil {
		t.Errorf("Delete own etcd CSR: %v", err)
	}
	// Its report on the policies its proxies took.
	mustPut(t, alpha, keyspace.ClusterProgrammed("alpha"), "report")
	if _, err := alpha.Delete(ctx, keyspace.ClusterProgrammed("alpha")); err != nil {
		t.Errorf("Delete own programmed report: %v", err)
	}

	// Reads: other clusters, the hub's records, global keys.
	mustPut(t, root, keyspace.ClusterInfo("beta"), "registered")
	mustPut(t, root, keyspace.ServiceEndpoints("beta", "shop", "cart"), "beta endpoints")
	mustPut(t, root, keyspace.GlobalService("shop", "cart"), "global")
	mustPut(t, root, keyspace.TrustBundle(), "roots")
	got, err := alpha.Get(ctx, keyspace.Root, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("Get %s with prefix: %v", keyspace.Root, err)
	}
	var keys []string
	for _, kv := range got.Kvs {
		keys = append(keys, string(kv.Key))
	}
	want := []string{
		keyspace.ClusterHeartbeat("alpha"), svc, keyspace.ClusterSynced("alpha"),
		keyspace.ClusterInfo("beta"), keyspace.ServiceEndpoints("beta", "shop", "cart"),
		keyspace.GlobalService("shop", "cart"), keyspace.TrustBundle(),
	}
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("alpha reads %v, want %v", keys, want)
	}
	if _, err := alpha.Get(ctx, "/elsewhere"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("Get outside %s: %v, want permission denied", keyspace.Root, err)
	}

	// Watch the other clusters, as the agent's reader does.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := alpha.Watch(wctx, keyspace.ClustersPrefix(), clientv3.WithPrefix(), clientv3.WithRev(got.Header.Revision+1))
	beta := h.client(t, hubinfo.EtcdUser("beta", reg))
	betaSvc := keyspace.ServiceEndpoints("beta", "shop", "new")
	mustPut(t, beta, betaSvc, "from beta")
	select {
	case resp, ok := <-wch:
		if !ok {
			t.Fatal("watch closed")
		}
		if err := resp.Err(); err != nil {
			t.Fatalf("watch: %v", err)
		}
		if len(resp.Events) != 1 || string(resp.Events[0].Kv.Key) != betaSvc || string(resp.Events[0].Kv.Value) != "from beta" {
			t.Fatalf("watch events %v, want beta's put of %s", resp.Events, betaSvc)
		}
	case <-time.After(waitFor):
		t.Fatalf("no watch event within %s", waitFor)
	}

	// A watch outside the readable range is cancelled with permission denied.
	denied := alpha.Watch(wctx, "/elsewhere", clientv3.WithPrefix())
	select {
	case resp := <-denied:
		// The server puts the whole gRPC error in the cancel reason, which the client
		// does not map back to rpctypes.ErrPermissionDenied: compare the text.
		if !resp.Canceled || resp.Err() == nil || !strings.Contains(resp.Err().Error(), rpctypes.ErrPermissionDenied.Error()) {
			t.Errorf("watch outside %s: canceled=%v err=%v, want canceled with permission denied", keyspace.Root, resp.Canceled, resp.Err())
		}
	case <-time.After(waitFor):
		t.Errorf("watch outside %s not refused within %s", keyspace.Root, waitFor)
	}

	// Revoking the lease removes the keys bound to it.
	if _, err := alpha.Revoke(ctx, lease.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	left, err := root.Get(ctx, keyspace.ClusterPrefix("alpha"), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if left.Count != 0 {
		t.Errorf("%d keys of alpha left after revoking its lease, want 0", left.Count)
	}
}

// EnsureCluster converges: a second run adds no user, role or permission.
func TestEnsureClusterIsIdempotent(t *testing.T) {
	h, root := withAuth(t)
	ctx := testContext(t)
	user, role := hubinfo.EtcdUser("alpha", reg), hubinfo.EtcdRole("alpha")
	ensureCluster(t, root, "alpha")
	first, err := root.RoleGet(ctx, role)
	if err != nil {
		t.Fatalf("RoleGet: %v", err)
	}
	ensureCluster(t, root, "alpha")
	second, err := root.RoleGet(ctx, role)
	if err != nil {
		t.Fatalf("RoleGet: %v", err)
	}
	if len(first.Perm) != 7 || len(second.Perm) != len(first.Perm) {
		t.Errorf("role has %d then %d permissions, want 7 both times", len(first.Perm), len(second.Perm))
	}
	perms := map[string]authpb.Permission_Type{}
	for _, p := range second.Perm {
		perms[string(p.Key)+" "+string(p.RangeEnd)] = p.PermType
	}
	for k, want := range map[string]authpb.Permission_Type{
		keyspace.ClusterHeartbeat("alpha") + " ":       authpb.READWRITE,
		keyspace.ClusterSynced("alpha") + " ":          authpb.READWRITE,
		keyspace.ClusterIntermediateCSR("alpha") + " ": authpb.READWRITE,
		keyspace.ClusterEtcdCSR("alpha") + " ":         authpb.READWRITE,
		keyspace.ClusterProgrammed("alpha") + " ":      authpb.READWRITE,
		keyspace.ClusterServices("alpha") + " " + clientv3.GetPrefixRangeEnd(keyspace.ClusterServices("alpha")): authpb.READWRITE,
		keyspace.Root + " " + clientv3.GetPrefixRangeEnd(keyspace.Root):                                         authpb.READ,
	} {
		if got, ok := perms[k]; !ok || got != want {
			t.Errorf("permission on %q: %v (present %v), want %v", k, got, ok, want)
		}
	}
	u, err := root.UserGet(ctx, user)
	if err != nil || !slices.Equal(u.Roles, []string{role}) {
		t.Errorf("user %s = %v, %v; want role %s only", user, u, err, role)
	}
	users, err := root.UserList(ctx)
	if err != nil || !slices.Equal(users.Users, []string{user, etcdsec.RootUser}) {
		t.Errorf("users %v, %v; want %s and root", users, err, user)
	}
	// The user works after the second run.
	mustPut(t, h.client(t, user), keyspace.ClusterSynced("alpha"), "1")

	if err := etcdsec.EnsureCluster(ctx, root.Auth, "Not_A_Label", reg); !errors.Is(err, keyspace.ErrInvalidName) {
		t.Errorf("EnsureCluster with an invalid name: %v, want keyspace.ErrInvalidName", err)
	}
	if err := etcdsec.EnsureCluster(ctx, root.Auth, "alpha", "not-hex"); err == nil || !strings.Contains(err.Error(), "hex digits") {
		t.Errorf("EnsureCluster with an invalid registration: %v, want it refused", err)
	}
	roles, err := root.RoleList(ctx)
	if err != nil || !slices.Equal(roles.Roles, []string{role, etcdsec.RootUser}) {
		t.Errorf("roles %v, %v; want %s and root only", roles, err, role)
	}
}

// RemoveCluster takes the cluster's user and role away, so its certificate, though
// still valid, gets nothing more; it can run again, and a new EnsureCluster restores
// access.
func TestRemoveClusterRevokesCredentials(t *testing.T) {
	h, root := withAuth(t)
	ctx := testContext(t)
	ensureCluster(t, root, "alpha")
	ensureCluster(t, root, "beta")
	alpha := h.client(t, hubinfo.EtcdUser("alpha", reg))
	mustPut(t, alpha, keyspace.ClusterSynced("alpha"), "1")

	for i := range 2 {
		if err := etcdsec.RemoveCluster(ctx, root.Auth, "alpha"); err != nil {
			t.Fatalf("RemoveCluster #%d: %v", i+1, err)
		}
	}
	if _, err := root.UserGet(ctx, hubinfo.EtcdUser("alpha", reg)); !errors.Is(err, rpctypes.ErrUserNotFound) {
		t.Errorf("UserGet after removal: %v, want user not found", err)
	}
	if _, err := root.RoleGet(ctx, hubinfo.EtcdRole("alpha")); !errors.Is(err, rpctypes.ErrRoleNotFound) {
		t.Errorf("RoleGet after removal: %v, want role not found", err)
	}
	_, err := alpha.Put(ctx, keyspace.ClusterSynced("alpha"), "2")
	wantDenied(t, "Put after removal", err)
	_, err = alpha.Get(ctx, keyspace.Root, clientv3.WithPrefix())
	wantDenied(t, "Get after removal", err)

	// Its data stays: the hub deletes it separately.
	got, err := root.Get(ctx, keyspace.ClusterSynced("alpha"))
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "1" {
		t.Errorf("synced marker after removal = %v, %v; want it kept", got, err)
	}
	// Other clusters are unaffected.
	mustPut(t, h.client(t, hubinfo.EtcdUser("beta", reg)), keyspace.ClusterSynced("beta"), "1")

	// Registering again (a new registration) gives access to the new registration's
	// certificates only.
	again := hubinfo.NewRegistration()
	ensureRegistration(t, root, "alpha", again)
	mustPut(t, h.client(t, hubinfo.EtcdUser("alpha", again)), keyspace.ClusterSynced("alpha"), "3")
	_, err = alpha.Put(ctx, keyspace.ClusterSynced("alpha"), "4")
	wantDenied(t, "Put with the first registration's certificate after registering again", err)
}

// Each registration of a cluster has its own etcd user: a new registration deletes
// every earlier one's user, including the user of a cluster registered before
// registrations existed, so their certificates are refused, for reads and writes,
// while the new one's work and other clusters are untouched.
func TestNewRegistrationRefusesEarlierOnes(t *testing.T) {
	h, root := withAuth(t)
	ctx := testContext(t)
	ensureRegistration(t, root, "alpha", "") // registered before registrations existed
	ensureCluster(t, root, "beta")
	legacy := h.client(t, hubinfo.EtcdUser("alpha", ""))
	mustPut(t, legacy, keyspace.ClusterSynced("alpha"), "legacy")
	beta := h.client(t, hubinfo.EtcdUser("beta", reg))

	var earlier []*clientv3.Client
	earlier = append(earlier, legacy)
	for i := range 3 {
		r := hubinfo.NewRegistration()
		ensureRegistration(t, root, "alpha", r)
		cur := h.client(t, hubinfo.EtcdUser("alpha", r))
		mustPut(t, cur, keyspace.ClusterSynced("alpha"), r)
		if _, err := cur.Get(ctx, keyspace.Root, clientv3.WithPrefix()); err != nil {
			t.Errorf("registration #%d: Get: %v", i+1, err)
		}
		for j, old := range earlier {
			_, err := old.Put(ctx, keyspace.ClusterSynced("alpha"), "stale")
			wantDenied(t, fmt.Sprintf("registration #%d: Put with registration #%d's certificate", i+1, j), err)
			_, err = old.Get(ctx, keyspace.Root, clientv3.WithPrefix())
			wantDenied(t, fmt.Sprintf("registration #%d: Get with registration #%d's certificate", i+1, j), err)
		}
		earlier = append(earlier, cur)
		users, err := root.UserList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{hubinfo.EtcdUser("alpha", r), hubinfo.EtcdUser("beta", reg), etcdsec.RootUser}; !slices.Equal(users.Users, want) {
			t.Errorf("registration #%d: users %v, want %v", i+1, users.Users, want)
		}
	}
	mustPut(t, beta, keyspace.ClusterSynced("beta"), "unaffected")
}

// etcd checks a watch's permission only when it is created: a watch opened with a
// certificate before its user is deleted keeps receiving every change, and so does a
// lease keep-alive stream. The Guard ends both as soon as the user is gone, and a
// watch opened again is refused. This test pins etcd's behaviour (without the Guard)
// as well as the Guard's.
func TestDeletedUserOpenStreams(t *testing.T) {
	for _, guarded := range []bool{false, true} {
		t.Run(fmt.Sprintf("guard=%v", guarded), func(t *testing.T) {
			var h *hubEtcd
			if guarded {
				g := etcdsec.NewGuard(logr.Discard())
				h = startEtcd(t, g.ServerOption())
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				t.Cleanup(func() { cancel(); <-done })
				go func() { defer close(done); g.Run(ctx, h.server) }()
			} else {
				h = startEtcd(t)
			}
			root := h.client(t, etcdsec.RootUser)
			ctx := testContext(t)
			if err := etcdsec.EnableAuth(ctx, root.Auth); err != nil {
				t.Fatal(err)
			}
			ensureCluster(t, root, "alpha")
			ensureCluster(t, root, "beta")
			stolen := h.client(t, hubinfo.EtcdUser("alpha", reg))
			beta := h.client(t, hubinfo.EtcdUser("beta", reg))

			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			watch := stolen.Watch(wctx, keyspace.ClustersPrefix(), clientv3.WithPrefix(), clientv3.WithCreatedNotify())
			if resp := <-watch; !resp.Created || resp.Err() != nil {
				t.Fatalf("watch not created: %+v %v", resp, resp.Err())
			}
			lease, err := stolen.Grant(ctx, 5)
			if err != nil {
				t.Fatal(err)
			}
			kctx, kcancel := context.WithCancel(ctx)
			defer kcancel()
			alive, err := stolen.KeepAlive(kctx, lease.ID)
			if err != nil {
				t.Fatal(err)
			}
			<-alive

			betaWatch := beta.Watch(wctx, keyspace.ClustersPrefix(), clientv3.WithPrefix(), clientv3.WithCreatedNotify())
			if resp := <-betaWatch; !resp.Created || resp.Err() != nil {
				t.Fatalf("beta's watch not created: %+v %v", resp, resp.Err())
			}

			if err := etcdsec.RemoveCluster(ctx, root.Auth, "alpha"); err != nil {
				t.Fatal(err)
			}
			_, err = stolen.Put(ctx, keyspace.ClusterSynced("alpha"), "x")
			wantDenied(t, "Put after removal", err)

			// Another cluster writes: does the revoked watch still see it? Beta's own
			// watch does, guard or not.
			mustPut(t, beta, keyspace.ServiceEndpoints("beta", "shop", "cart"), "secret")
			select {
			case resp := <-betaWatch:
				if resp.Err() != nil || len(resp.Events) != 1 {
					t.Errorf("beta's own watch after alpha's removal: %+v %v, want its write", resp, resp.Err())
				}
			case <-time.After(waitFor):
				t.Errorf("beta's own watch got nothing within %s", waitFor)
			}
			deadline := time.After(waitFor)
			for {
				select {
				case resp, ok := <-watch:
					if !ok {
						if !guarded {
							t.Fatal("without the guard the watch ended; etcd's behaviour changed: update the Guard's doc")
						}
						return
					}
					if len(resp.Events) > 0 {
						if guarded {
							t.Fatalf("the deleted user's watch received %s after its user was deleted", resp.Events[0].Kv.Key)
						}
						// etcd as documented: the open watch outlives its user.
						return
					}
					if resp.Canceled && guarded {
						if resp.Err() == nil {
							t.Error("watch canceled without an error")
						}
						// The keep-alive stream ended too, and is refused when opened
						// again: the lease is not kept alive and its channel closes
						// when the lease's TTL has passed.
						for range alive {
						}
						if ttl, err := root.TimeToLive(ctx, lease.ID); err != nil || ttl.TTL > 0 {
							t.Errorf("the deleted user's lease: TTL %v, %v; want it expired", ttl, err)
						}
						return
					}
				case <-deadline:
					t.Fatalf("watch neither delivered beta's write nor ended within %s", waitFor)
				}
			}
		})
	}
}
