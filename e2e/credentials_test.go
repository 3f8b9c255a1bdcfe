package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	meshecho "github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// reloadingEchoEnv makes the test binary a gRPC echo server with mTLS whose
// certificate, key and trust bundle are read from the directory at every handshake,
// as a workload that follows its renewed certificate does: "addr=id".
const reloadingEchoEnv = "MESHFED_E2E_RELOADING_MTLS_ECHO"

func reloadingEcho(spec, dir string) {
	load := func() (*tls.Certificate, *x509.CertPool, error) {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if err != nil {
			return nil, nil, err
		}
		caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
		if err != nil {
			return nil, nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		return &cert, pool, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool, err := load()
		if err != nil {
			return nil, err
		}
		return &tls.Config{Certificates: []tls.Certificate{*cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
			MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}, nil
	}}
	addr, id, _ := strings.Cut(spec, "=")
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	meshecho.Register(s, id)
	s.Serve(l) //nolint:errcheck // runs until killed
}

// serial is the serial number of the first certificate in a PEM file, "" if none.
func serial(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	cert, err := pki.ParseCert(data)
	if err != nil {
		return ""
	}
	return cert.SerialNumber.Text(16)
}

// TestCredentialRenewal: with lifetimes of minutes, the federation renews every
// short-lived credential by itself while mTLS traffic flows from alpha to a service
// in beta (a long-lived proxyless gRPC client, and a new client with new handshakes
// every few seconds): each agent's etcd client certificate (a CSR through its etcd
// prefix, signed by the hub, stored in the agent's Secret and hot-reloaded), the hub's
// own etcd serving and client certificates, and the workload certificates of client
// and server. It waits for several renewals of each, then restarts the hub once every
// certificate the agents started with has expired: the agents reconnect with the
// renewed ones and keep renewing. Throughout: 0 failed RPCs, CredentialsValid=True on
// every MeshCluster, status.credentialsExpiry moving forward.
//
// Intermediates are not included: the mesh CA refuses lifetimes under an hour
// (trust.MinIntermediateLifetime).
func TestCredentialRenewal(t *testing.T) {
	const lifetime = 2 * time.Minute
	const renewals = 2
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 2, MeshfedBinary: meshfedBin(), MTLS: true, MeshCA: true,
		WorkloadIdentities: []string{"shop/frontend", "shop/inventory"},
		AgentCertLifetime:  lifetime, EtcdCertLifetime: lifetime, WorkloadCertLifetime: lifetime, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)
	alpha, beta := s.Cluster("alpha"), s.Cluster("beta")
	serverDir := filepath.Join(beta.CertDir, "shop", "inventory")
	clientDir := filepath.Join(alpha.CertDir, "shop", "frontend")
	testutil.Eventually(t, 2*time.Minute, "workload certificates issued", func() error {
		for _, dir := range []string{serverDir, clientDir} {
			if serial(filepath.Join(dir, "tls.crt")) == "" {
				return fmt.Errorf("none in %s", dir)
			}
		}
		return nil
	})

	host := testnet.New(t, 1)
	addr := host.Addr(0).String()
	inventory := &service{namespace: "shop", name: "inventory", port: 8443, endpoints: []endpoint{ready(addr, beta.Zones[0])},
		accounts: []string{"inventory"}}
	if err := inventory.apply(ctx, kubernetes.NewForConfigOrDie(beta.Config())); err != nil {
		t.Fatal(err)
	}
	host.Start(t, "reloading-mtls-echo", []string{meshfedTestBinary(t)}, reloadingEchoEnv+"="+net.JoinHostPort(addr, "8443")+"=beta",
		tlsEchoDirEnv+"="+serverDir)
	hub := hubClient(t, s)
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "inventory"},
			Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8443, Protocol: v1.ProtocolGRPC}}}},
	} {
		if err := hub.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	const target = "inventory.shop.svc.clusterset.local:8443"
	const clientID = "spiffe://alpha.meshfed.local/ns/shop/sa/frontend" // alpha's client
	call := func(conn *grpc.ClientConn) error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		server, peer, err := meshecho.CallPeer(cctx, conn)
		if err == nil && (server != "beta" || peer != clientID) {
			err = fmt.Errorf("landed on %q, backend saw %q", server, peer)
		}
		return err
	}
	conn := meshClient(t, alpha, alpha.Zones[0], target, clientDir)
	testutil.Eventually(t, waitLong, "alpha's client reaches beta with mTLS", func() error { return call(conn) })
	testutil.Eventually(t, waitLong, "every cluster's credentials renewed through etcd once", func() error {
		return credentialsValid(ctx, hub, s)
	})

	// Traffic and watchers run until stop; every observation is kept for the end.
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		firstErr   error
		invalid    []string
		expiries   = map[string]map[time.Time]bool{}
		serials    = map[string]map[string]bool{}
	)
	seen := func(what, v string) {
		if v == "" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if serials[what] == nil {
			serials[what] = map[string]bool{}
		}
		serials[what][v] = true
	}
	count := func(err error) {
		if err == nil {
			ok.Add(1)
			return
		}
		failed.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // the long-lived client, paced: the machine is shared
		pace := time.NewTicker(5 * time.Millisecond)
		defer pace.Stop()
		for {
			select {
			case <-stop:
				return
			case <-pace.C:
			}
			count(call(conn))
		}
	})
	wg.Go(func() { // new clients: new handshakes with whatever certificates are current
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			fresh := meshClient(t, alpha, alpha.Zones[0], target, clientDir)
			var err error
			for range 3 {
				if err = call(fresh); err != nil {
					break
				}
			}
			count(err)
			fresh.Close()
		}
	})
	hubPKI := filepath.Join(s.Dir, "hub", "data", "pki")
	wg.Go(func() { // the certificates in use and the hub's view of them
		tick := time.NewTicker(testutil.Poll * 25)
		defer tick.Stop()
		for {
			for _, c := range s.Clusters {
				mc := &v1.MeshCluster{}
				if err := hub.Get(ctx, client.ObjectKey{Name: c.Name}, mc); err == nil {
					cond := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionCredentialsValid)
					mu.Lock()
					if cond == nil || cond.Status != metav1.ConditionTrue {
						invalid = append(invalid, fmt.Sprintf("%s at %s: %+v", c.Name, time.Now().Format(time.TimeOnly), cond))
					}
					if e := mc.Status.CredentialsExpiry; e != nil {
						if expiries[c.Name] == nil {
							expiries[c.Name] = map[time.Time]bool{}
						}
						expiries[c.Name][e.Time] = true
					}
					mu.Unlock()
				}
				if creds, err := agentcreds.Load(ctx, kubernetes.NewForConfigOrDie(c.Config()), hubinfo.Namespace); err == nil {
					if cert, err := creds.Certificate(); err == nil {
						seen(c.Name+" etcd client", cert.SerialNumber.Text(16))
					}
				}
			}
			seen("hub etcd server", serial(filepath.Join(hubPKI, "etcd-server.crt")))
			seen("alpha workload (client)", serial(filepath.Join(clientDir, "tls.crt")))
			seen("beta workload (server)", serial(filepath.Join(serverDir, "tls.crt")))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer halt()
	renewed := func(n int, since map[string]int) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			for _, what := range []string{"alpha etcd client", "beta etcd client", "hub etcd server", "alpha workload (client)", "beta workload (server)"} {
				if got := len(serials[what]) - since[what]; got < n+1 {
					return fmt.Errorf("%s: %d certificates seen, want %d", what, got, n+1)
				}
			}
			for _, c := range s.Clusters {
				if got := len(expiries[c.Name]) - since["expiry "+c.Name]; got < n+1 {
					return fmt.Errorf("%s's status.credentialsExpiry took %d values, want %d", c.Name, got, n+1)
				}
			}
			return nil
		}
	}
	started := time.Now()
	testutil.Eventually(t, 5*time.Minute, fmt.Sprintf("%d renewals of every credential", renewals), renewed(renewals, nil))
	t.Logf("%d renewals of every credential in %s; %d RPCs, %d failed", renewals, time.Since(started).Round(time.Second), ok.Load(), failed.Load())

	// Every certificate the agents started with has expired by now (lifetime after
	// the first renewal): a hub restart makes them handshake again.
	mu.Lock()
	before := map[string]int{}
	for what, set := range serials {
		before[what] = len(set)
	}
	for c, set := range expiries {
		before["expiry "+c] = len(set)
	}
	mu.Unlock()
	s.StopHub(syscall.SIGKILL)
	if err := s.StartHub(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 3*time.Minute, "renewals after a hub restart", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, what := range []string{"alpha etcd client", "beta etcd client"} {
			if len(serials[what]) <= before[what] {
				return fmt.Errorf("%s not renewed since the hub restarted", what)
			}
		}
		return nil
	})
	halt()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("after %s: %d RPCs, %d failed; certificates seen: %v; CredentialsValid not True %d times",
		time.Since(started).Round(time.Second), ok.Load(), failed.Load(), counts(serials), len(invalid))
	if failed.Load() > 0 {
		t.Errorf("%d of %d RPCs failed; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr)
	}
	if ok.Load() < 100 {
		t.Errorf("only %d RPCs succeeded: not enough traffic to prove anything", ok.Load())
	}
	if len(invalid) > 0 {
		t.Errorf("CredentialsValid was not True %d times, first: %s", len(invalid), invalid[0])
	}
	for c, set := range expiries {
		var last time.Time
		for e := range set {
			if e.After(last) {
				last = e
			}
		}
		if !last.After(time.Now()) {
			t.Errorf("%s's latest credentialsExpiry %v is not in the future", c, last)
		}
	}
}

// credentialsValid checks that every cluster's MeshCluster shows CredentialsValid=True
// with an expiry.
func credentialsValid(ctx context.Context, hub client.Client, s *sandbox.Sandbox) error {
	for _, c := range s.Clusters {
		mc := &v1.MeshCluster{}
		if err := hub.Get(ctx, client.ObjectKey{Name: c.Name}, mc); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(mc.Status.Conditions, v1.ConditionCredentialsValid) || mc.Status.CredentialsExpiry == nil {
			return fmt.Errorf("%s: CredentialsValid %+v, expiry %v", c.Name,
				meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionCredentialsValid), mc.Status.CredentialsExpiry)
		}
	}
	return nil
}

func counts(m map[string]map[string]bool) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}
