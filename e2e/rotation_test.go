package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/tls/certprovider"
	"google.golang.org/grpc/credentials/tls/certprovider/pemfile"
	"google.golang.org/grpc/keepalive"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent"
	meshecho "github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/trust"
	"github.com/meshfed/meshfed/trust/meshca"
)

// Environment of the reloading mTLS echo server (see init): "addr=id,…", and the
// directory of its ca.crt, tls.crt, tls.key.
const (
	rotatingEchoEnv    = "MESHFED_E2E_ROTATING_ECHO"
	rotatingEchoDirEnv = "MESHFED_E2E_ROTATING_ECHO_DIR"
)

// rotatingEchoMaxAge is how long the server keeps a connection: clients then
// reconnect, so that handshakes keep happening with whatever certificates are current
// — a connection made before a rotation would otherwise prove nothing about it.
const rotatingEchoMaxAge = 2 * time.Second

// init, not TestMain (main_test.go is shared): the test binary started with
// rotatingEchoEnv serves and never returns to the test framework.
func init() {
	if servers := os.Getenv(rotatingEchoEnv); servers != "" {
		rotatingEcho(strings.Split(servers, ","), os.Getenv(rotatingEchoDirEnv))
	}
}

// rotatingEcho serves gRPC echo over mTLS with the certificates in dir, re-read every
// second by grpc-go's own file_watcher provider (pemfile), as a proxyless server
// would. It logs one line per handshake naming the roots both sides' chains end in.
func rotatingEcho(servers []string, dir string) {
	prov, err := pemfile.NewProvider(pemfile.Options{CertFile: filepath.Join(dir, "tls.crt"),
		KeyFile: filepath.Join(dir, "tls.key"), RootFile: filepath.Join(dir, "ca.crt"), RefreshDuration: time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		km, err := prov.KeyMaterial(context.Background())
		if err != nil {
			return nil, err
		}
		return handshakeConfig(km, &mu), nil
	}}
	for _, spec := range servers {
		addr, id, _ := strings.Cut(spec, "=")
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)),
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: rotatingEchoMaxAge, MaxConnectionAgeGrace: 10 * time.Second}))
		meshecho.Register(s, id)
		go s.Serve(l) //nolint:errcheck
	}
	select {}
}

// handshakeConfig is the server's TLS config for one handshake with key material km.
func handshakeConfig(km *certprovider.KeyMaterial, mu *sync.Mutex) *tls.Config {
	own := ""
	if len(km.Certs) > 0 {
		chain := km.Certs[0].Certificate
		leaf, err := x509.ParseCertificate(chain[0])
		inter := x509.NewCertPool()
		for _, der := range chain[1:] {
			if c, err := x509.ParseCertificate(der); err == nil {
				inter.AddCert(c)
			}
		}
		if err == nil {
			if chains, err := leaf.Verify(x509.VerifyOptions{Roots: km.Roots, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
				own = meshca.Fingerprint(chains[0][len(chains[0])-1])[:16]
			}
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: km.Certs, ClientCAs: km.Roots,
		ClientAuth: tls.RequireAndVerifyClientCert, NextProtos: []string{"h2"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			peer := "none"
			if len(cs.VerifiedChains) > 0 {
				c := cs.VerifiedChains[0]
				peer = meshca.Fingerprint(c[len(c)-1])[:16]
			}
			mu.Lock()
			fmt.Printf("handshake client-root=%s server-root=%s\n", peer, own)
			mu.Unlock()
			return nil
		}}
}

// rotateStatus is what `meshfedctl trust rotate status -o json` prints.
type rotateStatus struct {
	Plan struct {
		Phase, Old, New, Signing, Next string
		Lagging                        []struct{ Cluster, Why string }
	}
	Clusters []struct {
		Cluster          string
		OK               bool
		Served           []string
		IntermediateRoot string
		Workloads        *struct {
			Identities  int
			Root        string
			Current     bool
			TrustServed bool
		}
	}
}

// TestRootRotation: `meshfedctl trust rotate` rotates the mesh root in stages while
// proxyless gRPC clients in alpha and beta call a service in gamma, on a network of
// its own, through gamma's east-west gateway with mTLS from agent-issued certificates
// (file_watcher providers on both sides; the server closes connections every 2 s, so
// handshakes keep happening with whatever certificates are current). Every step runs
// through the CLI; a step asked for early refuses, naming what lags; no call fails and
// no process restarts; at the end every cluster serves, and every handshake uses,
// only the new root.
func TestRootRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 3, MeshfedBinary: meshfedBin(),
		SeparateNetwork: true, MTLS: true, MeshCA: true, WorkloadIdentities: []string{"shop/frontend", "shop/inventory"},
		Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)
	alpha, beta, gamma := s.Cluster("alpha"), s.Cluster("beta"), s.Cluster("gamma")
	pids := map[string]int{"hub": s.Hub.PID}
	for _, c := range s.Clusters {
		pids[c.Name+" agent"], pids[c.Name+" gateway"] = c.AgentPID, c.GatewayPID
	}

	serverDir := filepath.Join(gamma.CertDir, "shop", "inventory")
	clientDirs := map[*sandbox.Cluster]string{alpha: filepath.Join(alpha.CertDir, "shop", "frontend"),
		beta: filepath.Join(beta.CertDir, "shop", "frontend")}
	testutil.Eventually(t, 2*time.Minute, "workload certificates issued from the mesh root", func() error {
		for _, dir := range []string{serverDir, clientDirs[alpha], clientDirs[beta]} {
			if _, err := os.Stat(filepath.Join(dir, "tls.crt")); err != nil {
				return err
			}
		}
		return nil
	})
	testutil.Eventually(t, 2*time.Minute, "every cluster's workloads reported", func() error {
		st, err := rotationStatus(ctx, s)
		if err != nil {
			return err
		}
		for _, c := range st.Clusters {
			if c.Workloads == nil || c.IntermediateRoot == "" {
				return fmt.Errorf("%s: intermediate %q, workloads %v", c.Cluster, c.IntermediateRoot, c.Workloads)
			}
		}
		return nil
	})

	// inventory runs in gamma only: alpha's and beta's calls cross gamma's gateway.
	host := testnet.New(t, 1)
	addr := host.Addr(0).String()
	inventory := &service{namespace: "shop", name: "inventory", port: 8443, endpoints: []endpoint{ready(addr, gamma.Zones[0])},
		accounts: []string{"inventory"}}
	if err := inventory.apply(ctx, kubernetes.NewForConfigOrDie(gamma.Config())); err != nil {
		t.Fatal(err)
	}
	server := host.Start(t, "rotating-echo", []string{meshfedTestBinary(t)},
		rotatingEchoEnv+"="+net.JoinHostPort(addr, "8443")+"=gamma", rotatingEchoDirEnv+"="+serverDir)
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
	target := "inventory.shop.svc.clusterset.local:8443"
	var streams []*traffic
	for _, c := range []*sandbox.Cluster{alpha, beta} {
		conn := meshClient(t, c, c.Zones[0], target, clientDirs[c])
		testutil.Eventually(t, waitLong, c.Name+"'s client reaches gamma through its gateway", func() error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			server, peer, err := meshecho.CallPeer(cctx, conn)
			if err != nil {
				return err
			}
			if server != "gamma" || peer != "spiffe://"+c.Name+".meshfed.local/ns/shop/sa/frontend" {
				return fmt.Errorf("landed on %q, backend saw %q", server, peer)
			}
			return nil
		})
		streams = append(streams, startTraffic(t, c.Name+"→gamma", conn))
	}

	tl := &timeline{start: time.Now(), streams: streams, handshakes: server.LogPath}
	// stage runs one step of the scenario with the traffic counted under its name,
	// then records where the rotation stands.
	stage := func(name string, step func()) {
		t.Helper()
		for _, tr := range streams {
			tr.Phase(name)
		}
		step()
		st, err := rotationStatus(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		tl.add(t, name, st)
	}
	rotate := func(step string, wait time.Duration) (string, error) {
		out, err := exec.CommandContext(ctx, meshfedctlBin(), "trust", "rotate", step, "--dir", s.Dir,
			"--wait", wait.String(), "--settle", "3s").CombinedOutput()
		t.Logf("meshfedctl trust rotate %s --wait %s --settle 3s:\n%s", step, wait, out)
		return string(out), err
	}
	// Each stage lets a few connections cycle (the server ends each after 2 s), so
	// that its certificates are really used in handshakes.
	stage("before", func() { tl.waitHandshakes(t, 4) })
	stage("start --wait 0: root added", func() {
		if _, err := rotate("start", 0); err != nil {
			t.Fatalf("start: %v", err)
		}
	})
	// Too early: the agents have not all caught up, or their workloads' files have not
	// settled. The step must refuse and say who lags.
	stage("switch --wait 0: refused", func() {
		if out, err := rotate("switch", 0); err == nil || !strings.Contains(out, "refusing") || !strings.Contains(out, "lag") {
			t.Fatalf("switch right after start: %v; want a refusal naming what lags", err)
		}
	})
	stage("start --wait: all serve both", func() {
		if _, err := rotate("start", 3*time.Minute); err != nil {
			t.Fatalf("start --wait: %v", err)
		}
		tl.waitHandshakes(t, 4)
	})
	stage("switch --wait: all re-issued", func() {
		if _, err := rotate("switch", 3*time.Minute); err != nil {
			t.Fatalf("switch: %v", err)
		}
		tl.waitHandshakes(t, 4)
	})
	stage("start again: refused", func() {
		if out, err := rotate("start", 0); err == nil || !strings.Contains(out, "refusing") {
			t.Fatalf("start during a rotation: %v; want a refusal", err)
		}
	})
	stage("finish --wait: old retired", func() {
		if _, err := rotate("finish", 3*time.Minute); err != nil {
			t.Fatalf("finish: %v", err)
		}
	})
	// Connections made under the new root alone.
	stage("after", func() { tl.waitHandshakes(t, 6) })
	if err := tl.loadRootFingerprints(ctx, s); err != nil {
		t.Fatal(err)
	}

	for _, tr := range streams {
		tr.Stop()
	}
	tl.print(t)
	for _, tr := range streams {
		var b strings.Builder
		tr.Print(&b)
		t.Logf("traffic:\n%s", b.String())
		calls, failed := tr.Totals()
		if failed > 0 || calls == 0 {
			t.Errorf("%s: %d of %d calls failed: %v", tr.name, failed, calls, tr.Failures())
		}
	}

	st, err := rotationStatus(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	newRoot := tl.rows[1].status.Plan.New
	if st.Plan.Phase != "steady" || st.Plan.New != newRoot || len(st.Plan.Lagging) > 0 {
		t.Errorf("after the rotation: %+v, want steady on %s with nothing lagging", st.Plan, newRoot)
	}
	for _, c := range st.Clusters {
		if !c.OK || len(c.Served) != 1 || c.Served[0] != newRoot || c.IntermediateRoot != newRoot || c.Workloads == nil || c.Workloads.Root != newRoot {
			t.Errorf("%s after the rotation: %+v", c.Cluster, c)
		}
	}
	// The files workloads read hold the new root alone, and the old root verifies
	// none of their certificates.
	oldRoot := tl.rows[0].status.Plan.New
	for dir, id := range map[string]string{serverDir: "spiffe://gamma.meshfed.local/ns/shop/sa/inventory",
		clientDirs[alpha]: "spiffe://alpha.meshfed.local/ns/shop/sa/frontend", clientDirs[beta]: "spiffe://beta.meshfed.local/ns/shop/sa/frontend"} {
		ca, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
		if roots, err := trust.ParseCertificates(ca); err != nil || len(roots) != 1 {
			t.Errorf("%s/ca.crt holds %d roots (%v), want 1", dir, len(roots), err)
		}
		leaf, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
		if _, err := trust.Verify(leaf, ca, id); err != nil {
			t.Errorf("%s/tls.crt against its ca.crt: %v", dir, err)
		}
		if _, err := trust.Verify(leaf, tl.pem[oldRoot], id); err == nil {
			t.Errorf("%s/tls.crt verifies against the retired root %s", dir, oldRoot)
		}
	}
	for pair, n := range tl.rows[len(tl.rows)-1].handshakes {
		if nf := tl.fp[newRoot]; pair != nf+"/"+nf {
			t.Errorf("after the rotation, %d handshakes with chains under %s, want the new root's alone", n, pair)
		}
	}
	for what, pid := range pids {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Errorf("%s (pid %d) is gone: %v", what, pid, err)
		}
	}
	s2, err := sandbox.Read(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Hub.PID != pids["hub"] {
		t.Errorf("the hub restarted: pid %d, was %d", s2.Hub.PID, pids["hub"])
	}
	for _, c := range s2.Clusters {
		if c.AgentPID != pids[c.Name+" agent"] || c.GatewayPID != pids[c.Name+" gateway"] {
			t.Errorf("%s's agent or gateway restarted", c.Name)
		}
	}
}

// rotationStatus runs `meshfedctl trust rotate status -o json`.
func rotationStatus(ctx context.Context, s *sandbox.Sandbox) (*rotateStatus, error) {
	out, err := exec.CommandContext(ctx, meshfedctlBin(), "trust", "rotate", "status", "--dir", s.Dir, "-o", "json", "--settle", "3s").Output()
	if err != nil {
		return nil, fmt.Errorf("trust rotate status: %w: %s", err, out)
	}
	st := &rotateStatus{}
	if err := json.Unmarshal(out, st); err != nil {
		return nil, fmt.Errorf("trust rotate status: %w: %s", err, out)
	}
	return st, nil
}

// timeline records the rotation's stages with the traffic and the handshakes the
// server saw, by root.
type timeline struct {
	start      time.Time
	streams    []*traffic
	handshakes string            // the server's log
	fp         map[string]string // root name -> the server log's fingerprint
	pem        map[string][]byte // root name -> certificate
	rows       []timelineRow
}

type timelineRow struct {
	stage         string
	at            time.Duration
	status        *rotateStatus
	calls, failed int            // during the stage
	handshakes    map[string]int // "client root/server root" fingerprints -> handshakes during the stage
}

// handshakeCount reads the server's log: handshakes by the roots of the client's and
// the server's chains ("client/server").
func (tl *timeline) handshakeCount() (map[string]int, int) {
	f, err := os.Open(tl.handshakes)
	if err != nil {
		return nil, 0
	}
	defer f.Close()
	by, n := map[string]int{}, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var client, server string
		if _, err := fmt.Sscanf(sc.Text(), "handshake client-root=%s server-root=%s", &client, &server); err == nil {
			by[client+"/"+server]++
			n++
		}
	}
	return by, n
}

// waitHandshakes waits until the server has seen n more handshakes: connections made
// with the certificates of the current stage.
func (tl *timeline) waitHandshakes(t *testing.T, n int) {
	t.Helper()
	_, from := tl.handshakeCount()
	testutil.Eventually(t, waitLong, fmt.Sprintf("%d new handshakes", n), func() error {
		if _, now := tl.handshakeCount(); now < from+n {
			return fmt.Errorf("%d of %d", now-from, n)
		}
		return nil
	})
}

func (tl *timeline) add(t *testing.T, stage string, st *rotateStatus) {
	t.Helper()
	r := timelineRow{stage: stage, at: time.Since(tl.start), status: st, handshakes: map[string]int{}}
	for _, tr := range tl.streams {
		c, f := tr.Totals()
		r.calls += c
		r.failed += f
	}
	by, _ := tl.handshakeCount()
	prev := map[string]int{}
	for _, p := range tl.rows {
		r.calls -= p.calls
		r.failed -= p.failed
		for k, v := range p.handshakes {
			prev[k] += v
		}
	}
	for k, v := range by {
		if d := v - prev[k]; d > 0 {
			r.handshakes[k] = d
		}
	}
	tl.rows = append(tl.rows, r)
}

// print logs the timeline: per stage, the roots each cluster serves, the signing
// root, how many intermediates and workload certificates are under the new root,
// handshakes by the root of the client's chain, and calls.
func (tl *timeline) print(t *testing.T) {
	newRoot := tl.rows[len(tl.rows)-1].status.Plan.New
	oldRoot := tl.rows[0].status.Plan.New
	short := map[string]string{oldRoot: "old", newRoot: "new"}
	name := func(r string) string {
		if s, ok := short[strings.TrimSuffix(r, " (retired)")]; ok {
			return s
		}
		return r
	}
	var b strings.Builder
	fmt.Fprintf(&b, "old root %s, new root %s\n", oldRoot, newRoot)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tENDED AT\tPHASE\tSIGNS\tROOTS SERVED (alpha beta gamma)\tINTERMEDIATES UNDER NEW\tLEAVES UNDER NEW\tHANDSHAKES (client/server root)\tCALLS\tFAILED")
	for _, r := range tl.rows {
		var served []string
		inter, leaves := 0, 0
		for _, c := range r.status.Clusters {
			var names []string
			for _, s := range c.Served {
				names = append(names, name(s))
			}
			served = append(served, strings.Join(names, "+"))
			if c.IntermediateRoot == newRoot {
				inter++
			}
			if c.Workloads != nil && c.Workloads.Root == newRoot && c.Workloads.Current {
				leaves++
			}
		}
		var hs []string
		for _, pair := range slices.Sorted(maps.Keys(r.handshakes)) {
			c, s, _ := strings.Cut(pair, "/")
			hs = append(hs, fmt.Sprintf("%s/%s %d", tl.rootName(c, oldRoot, newRoot), tl.rootName(s, oldRoot, newRoot), r.handshakes[pair]))
		}
		fmt.Fprintf(tw, "%s\t%5.1fs\t%s\t%s\t%s\t%d/%d\t%d/%d\t%s\t%d\t%d\n", r.stage, r.at.Seconds(), r.status.Plan.Phase,
			name(r.status.Plan.Signing), strings.Join(served, " "), inter, len(r.status.Clusters), leaves, len(r.status.Clusters),
			strings.Join(hs, ", "), r.calls, r.failed)
	}
	tw.Flush()
	t.Logf("rotation timeline:\n%s", b.String())
}

// rootName names a fingerprint from the server's log by the roots' Secrets, read once.
func (tl *timeline) rootName(fp, oldRoot, newRoot string) string {
	for name, f := range tl.fp {
		if f == fp {
			switch name {
			case oldRoot:
				return "old"
			case newRoot:
				return "new"
			}
			return name
		}
	}
	return fp
}

// loadRootFingerprints maps every root Secret on the hub to the fingerprint the
// server's log uses.
func (tl *timeline) loadRootFingerprints(ctx context.Context, s *sandbox.Sandbox) error {
	kube, err := kubernetes.NewForConfig(s.HubConfig())
	if err != nil {
		return err
	}
	list, err := kube.CoreV1().Secrets(meshca.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: meshca.RootLabel})
	if err != nil {
		return err
	}
	tl.fp, tl.pem = map[string]string{}, map[string][]byte{}
	for _, sec := range list.Items {
		tl.pem[sec.Name] = sec.Data[corev1.TLSCertKey]
		certs, err := trust.ParseCertificates(sec.Data[corev1.TLSCertKey])
		if err != nil {
			return err
		}
		tl.fp[sec.Name] = clusteragent.Digest(certs[0].Raw)[:16]
	}
	return nil
}
