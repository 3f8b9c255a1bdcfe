package etcdconn_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

// waitFor bounds every wait: a loaded 2-core machine can stall a handshake for seconds.
const waitFor = 30 * time.Second

// tlsEtcd is a real etcd as the hub runs it (TLS, client certificates required, auth
// on, the certificate's common name as the user) that can be restarted in place.
type tlsEtcd struct {
	t    *testing.T
	ca   *pki.CA
	opts embedetcd.Options
	srv  *embedetcd.Server
}

func startTLSEtcd(t *testing.T) *tlsEtcd {
	t.Helper()
	ca, err := pki.NewCA("test-etcd-ca", time.Hour)
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
	e := &tlsEtcd{t: t, ca: ca, opts: embedetcd.Options{
		DataDir: filepath.Join(dir, "data"),
		ClientTLS: &embedetcd.TLS{
			CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
			TrustedCAFile: filepath.Join(dir, "ca.crt"), ClientCertAuth: true,
		},
		UnsafeNoFsync: true,
		ZapLogger:     zap.NewNop(),
	}}
	e.start()
	// Restarts keep the client URL, as a restarted hub does.
	e.opts.ClientURL = e.srv.Endpoints()[0]
	t.Cleanup(func() { e.srv.Close() })

	root := e.client(t, "root", time.Hour)
	ctx := context.Background()
	if _, err := root.UserAddWithOptions(ctx, "root", "", &clientv3.UserAddOptions{NoPassword: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.RoleAdd(ctx, "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *tlsEtcd) start() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	srv, err := embedetcd.Start(ctx, e.opts)
	if err != nil {
		e.t.Fatalf("start etcd: %v", err)
	}
	e.srv = srv
}

// restart stops etcd and starts it again on the same URL and data: every client
// connection is cut and has to handshake again.
func (e *tlsEtcd) restart() {
	e.t.Helper()
	e.srv.Close()
	e.start()
}

func (e *tlsEtcd) issue(t *testing.T, user string, lifetime time.Duration) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := e.ca.Issue(pki.ClientTemplate(user), lifetime)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func (e *tlsEtcd) client(t *testing.T, user string, lifetime time.Duration) *clientv3.Client {
	t.Helper()
	certPEM, keyPEM := e.issue(t, user, lifetime)
	c, err := etcdconn.New(context.Background(), etcdconn.Credentials{Endpoints: e.srv.Endpoints(), CA: e.ca.CertPEM, Cert: certPEM, Key: keyPEM})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHotReload: a client keeps a watch open while its certificate expires and is
// replaced through its KeyPair. The open connection keeps delivering events after
// the old certificate expired (etcd checks it at the handshake only); after etcd
// restarts, the client's new connection handshakes with the new certificate (a client
// holding only the old one is refused) and the watch resumes: every write of the
// whole run arrives exactly once, in order.
func TestHotReload(t *testing.T) {
	e := startTLSEtcd(t)
	admin := e.client(t, "root", time.Hour)

	// The first certificate expires a few seconds from now.
	oldCert, oldKey := e.issue(t, "root", 3*time.Second)
	pair, err := etcdconn.NewKeyPair(oldCert, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	oldNotAfter := pair.Leaf().NotAfter
	watcher, err := etcdconn.Dial(context.Background(), e.srv.Endpoints(), e.ca.CertPEM, pair)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 3*waitFor)
	defer cancel()
	start, err := admin.Put(ctx, "/t/start", "")
	if err != nil {
		t.Fatal(err)
	}
	events := watcher.Watch(ctx, "/t/", clientv3.WithPrefix(), clientv3.WithRev(start.Header.Revision+1))

	var (
		mu   sync.Mutex
		seen []string
		werr error
	)
	go func() {
		for resp := range events {
			mu.Lock()
			if err := resp.Err(); err != nil {
				werr = err
			}
			for _, ev := range resp.Events {
				seen = append(seen, string(ev.Kv.Key))
			}
			mu.Unlock()
		}
	}()
	next := 0
	// write puts the next key, retrying while etcd restarts; a write that may have
	// landed is never repeated under another name, so the expected list is exact.
	write := func() {
		t.Helper()
		key := "/t/" + strconv.Itoa(next)
		testutil.Eventually(t, waitFor, "write "+key, func() error {
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			defer wcancel()
			_, err := admin.Put(wctx, key, "v")
			return err
		})
		next++
	}
	received := func(what string) {
		t.Helper()
		testutil.Eventually(t, waitFor, what, func() error {
			mu.Lock()
			defer mu.Unlock()
			if werr != nil {
				return fmt.Errorf("watch failed: %w", werr)
			}
			if len(seen) < next {
				return fmt.Errorf("%d of %d events", len(seen), next)
			}
			return nil
		})
	}

	write()
	received("the watch is open")
	testutil.Eventually(t, waitFor, "the first certificate expired", testutil.Check(func() (bool, string) {
		return time.Now().After(oldNotAfter), "valid until " + oldNotAfter.String()
	}))
	write()
	received("events on the open connection after its certificate expired")

	newCert, newKey := e.issue(t, "root", time.Hour)
	if err := pair.Set(newCert, newKey); err != nil {
		t.Fatal(err)
	}
	if !pair.Leaf().NotAfter.After(oldNotAfter) {
		t.Fatal("Set did not replace the certificate")
	}
	e.restart()
	for range 5 {
		write()
	}
	received("every event after etcd restarted, through the renewed certificate")

	mu.Lock()
	for i, k := range seen {
		if want := "/t/" + strconv.Itoa(i); k != want {
			t.Errorf("event %d is %s, want %s: lost or repeated events %v", i, k, want, seen)
			break
		}
	}
	if len(seen) != next {
		t.Errorf("%d events, want %d: %v", len(seen), next, seen)
	}
	mu.Unlock()

	// A new client with the shared pair connects; one with the expired certificate
	// alone does not.
	fresh, err := etcdconn.Dial(ctx, e.srv.Endpoints(), e.ca.CertPEM, pair)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	gctx, gcancel := context.WithTimeout(ctx, waitFor)
	defer gcancel()
	if _, err := fresh.Get(gctx, "/t/0"); err != nil {
		t.Errorf("new client with the renewed pair: %v", err)
	}
	stale, err := etcdconn.New(ctx, etcdconn.Credentials{Endpoints: e.srv.Endpoints(), CA: e.ca.CertPEM, Cert: oldCert, Key: oldKey})
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	defer scancel()
	if _, err := stale.Get(sctx, "/t/0"); err == nil {
		t.Error("a client with the expired certificate connected: the test proves nothing")
	}
}

// Set keeps the etcd user: a certificate for another common name, or a key that is
// not the certificate's, is refused and the current pair stays.
func TestKeyPairSetRefuses(t *testing.T) {
	ca, err := pki.NewCA("ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(user string) ([]byte, []byte) {
		c, k, err := ca.Issue(pki.ClientTemplate(user), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return c, k
	}
	c1, k1 := issue("meshfed-agent-alpha")
	pair, err := etcdconn.NewKeyPair(c1, k1)
	if err != nil {
		t.Fatal(err)
	}
	before := pair.Leaf()
	c2, k2 := issue("meshfed-agent-beta")
	c3, _ := issue("meshfed-agent-alpha")
	for name, tc := range map[string]struct{ cert, key []byte }{
		"other user":     {c2, k2},
		"key of another": {c3, k1},
		"junk":           {[]byte("junk"), k1},
	} {
		if err := pair.Set(tc.cert, tc.key); err == nil {
			t.Errorf("%s: Set accepted it", name)
		}
	}
	if !pair.Leaf().Equal(before) || pair.User() != "meshfed-agent-alpha" {
		t.Error("a refused Set changed the pair")
	}
	c4, k4 := issue("meshfed-agent-alpha")
	if err := pair.Set(c4, k4); err != nil || pair.Leaf().Equal(before) {
		t.Errorf("Set of a renewed certificate for the same user: %v", err)
	}
}
