package fleetbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/proc"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
)

// Result is what a run measured. Durations of phases that saw no change are 0.
type Result struct {
	Options   Options
	Endpoints int

	// Bootstrap: from the agent's start to a stream holding every endpoint.
	Bootstrap time.Duration
	// RSS at the endpoint count with the latency observers connected: just after
	// the bootstrap (BootRSS), and in steady state, after the churn (RSS).
	BootRSS, RSS int64
	// RSSParts is what the Go runtime says of its memory when RSS is read.
	RSSParts string

	// Heartbeats only.
	HeartbeatCPU      float64 // % of a core
	HeartbeatRebuilds float64
	HeartbeatWindow   time.Duration
	HeartbeatWrites   int64
	// HeartbeatErrors counts failed heartbeat writes over the whole run.
	HeartbeatErrors int64
	HeartbeatPushes int64 // EDS responses the observers received
	// RebuildMean is the agent's mean rebuild time (meshfed_xds_rebuild_seconds) in
	// the heartbeat-only window.
	RebuildMean time.Duration
	// LightPushMean is the agent's own share of a light-load change: the mean of
	// meshfed_xds_change_to_push_seconds (view → snapshots set) over that phase.
	LightPushMean time.Duration
	// BurstPushMean and BurstRebuilds are the same over the burst, and the rebuilds
	// it took.
	BurstPushMean time.Duration
	BurstRebuilds float64

	LightP50, LightP99 time.Duration
	BurstLast          time.Duration // last seen after the last write
	BurstP99           time.Duration

	ChurnP50, ChurnP99 time.Duration
	ChurnRate          float64 // achieved, changes/s
	ChurnCPU           float64
	ChurnRebuilds      float64
	ChurnUnseen        int

	FanoutStreams   int
	FanoutP99       time.Duration
	FanoutCPUChange time.Duration // agent CPU per change
	FanoutRSS       int64
	// Live heap (go_gc_heap_live_bytes, right after a collection the benchmark asks
	// for) before the fan-out streams came, with them, and Options.HeapSettle after
	// they left.
	HeapBase, HeapFanout, HeapAfter int64
	// BenchCPU is this process's CPU during the churn (the simulator, etcd, the
	// streams' clients): the rest of the machine the agent shares.
	BenchCPU float64
	// Superseded counts changes a newer change of the same endpoint replaced unseen.
	Superseded int
}

// Run runs the benchmark: a fleet of Options.Clusters simulated clusters, one agent,
// the phases in order, and returns what it measured. Options.Out receives progress.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Out, "fleetbench: "+format+"\n", args...) }
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	res := &Result{Options: o, Endpoints: o.Clusters * o.Services * o.Endpoints}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	say("starting a kube-apiserver for the agent's cluster and the hub's etcd (embedetcd, client mTLS)...")
	cpDone := make(chan error, 1)
	var cp *localkube.ControlPlane
	go func() {
		var err error
		cp, err = localkube.Start(ctx, localkube.Options{Name: "member", Dir: filepath.Join(o.Dir, "kube"), InstallCRDs: true})
		cpDone <- err
	}()
	etcdSrv, creds, err := startEtcd(ctx, o.Dir)
	if err != nil {
		<-cpDone
		if cp != nil {
			cp.Stop()
		}
		return nil, err
	}
	defer etcdSrv.Close()
	if err := <-cpDone; err != nil {
		return nil, err
	}
	defer cp.Stop()
	cli, err := etcdconn.New(ctx, creds)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	// Before the client closes: the heartbeats stop writing first.
	defer cancel()

	tr := newTracker()
	f := newFleet(o, cli, tr)
	start := time.Now()
	if err := f.writeAll(ctx); err != nil {
		return nil, fmt.Errorf("write the fleet's records: %w", err)
	}
	if err := f.heartbeat(ctx); err != nil {
		return nil, err
	}
	say("%d clusters × %d services × %d endpoints (%d endpoints) written in %s; heartbeats every %s",
		o.Clusters, o.Services, o.Endpoints, res.Endpoints, time.Since(start).Round(time.Millisecond), o.HeartbeatTTL/3)

	agent, xdsAddr, metricsURL, err := startAgent(ctx, o, cp.Config, creds)
	if err != nil {
		return nil, err
	}
	defer agent.Stop(5 * time.Second)
	debugURL := strings.TrimSuffix(metricsURL, "/metrics")
	agentStart := time.Now()
	pid := agent.Pid()

	// Bootstrap: one stream of every service, full when it lists every endpoint.
	all := make([]int, o.Services)
	for s := range all {
		all[s] = s
	}
	full := make(chan time.Time, 1)
	var fullOnce sync.Once
	boot, err := openStream(ctx, xdsAddr, 0, selfZone(0), all, tr, func(at time.Time, clas []*endpointv3.ClusterLoadAssignment) {
		n := 0
		for _, cla := range clas {
			n += countEndpoints(cla)
		}
		if len(clas) == o.Services && n == res.Endpoints {
			fullOnce.Do(func() { full <- at })
		}
	})
	if err != nil {
		return nil, err
	}
	select {
	case at := <-full:
		res.Bootstrap = at.Sub(agentStart)
	case <-agent.Done():
		return nil, fmt.Errorf("agent exited: %w (log: %s)", agent.Failure(), agent.LogPath)
	case <-time.After(3 * time.Minute):
		return nil, fmt.Errorf("agent did not serve the full view within 3 minutes (log: %s)", agent.LogPath)
	}
	boot.close()
	say("bootstrap: the new agent served all %d endpoints %s after it started", res.Endpoints, res.Bootstrap.Round(time.Millisecond))

	// Latency observers: one stream per zone and service.
	var observers []*stream
	defer func() {
		for _, st := range observers {
			st.close()
		}
	}()
	for z := range o.Zones {
		for s := range o.Services {
			st, err := openStream(ctx, xdsAddr, len(observers)+1, selfZone(z), []int{s}, tr, nil)
			if err != nil {
				return nil, err
			}
			observers = append(observers, st)
		}
	}
	if err := waitFirst(ctx, observers, agent); err != nil {
		return nil, err
	}
	if res.BootRSS, err = proc.RSS(pid); err != nil {
		return nil, err
	}
	say("%d observer streams (%d zones × %d services) connected; agent RSS %s", len(observers), o.Zones, o.Services, mib(res.BootRSS))
	o.profile(ctx, debugURL, "bootstrap.heap.pprof", "heap?gc=1")()

	// Heartbeats only.
	pushes := func() int64 {
		var n int64
		for _, st := range observers {
			n += st.responses.Load()
		}
		return n
	}
	window := max(o.Duration, 2*o.HeartbeatTTL/3)
	u, err := startUsage(pid)
	if err != nil {
		return nil, err
	}
	rebuilds0, err := metric(ctx, metricsURL, "meshfed_xds_rebuild_seconds_count")
	if err != nil {
		return nil, err
	}
	rebuildSecs0, err := metric(ctx, metricsURL, "meshfed_xds_rebuild_seconds_sum")
	if err != nil {
		return nil, err
	}
	hb0, p0 := f.heartbeats.Load(), pushes()
	say("heartbeats only for %s...", window)
	if err := sleep(ctx, window); err != nil {
		return nil, err
	}
	res.HeartbeatWindow = window
	if res.HeartbeatCPU, _, err = u.percent(); err != nil {
		return nil, err
	}
	rebuilds1, err := metric(ctx, metricsURL, "meshfed_xds_rebuild_seconds_count")
	if err != nil {
		return nil, err
	}
	res.HeartbeatRebuilds, res.HeartbeatWrites, res.HeartbeatPushes = rebuilds1-rebuilds0, f.heartbeats.Load()-hb0, pushes()-p0
	rebuildSecs1, err := metric(ctx, metricsURL, "meshfed_xds_rebuild_seconds_sum")
	if err != nil {
		return nil, err
	}
	if res.HeartbeatRebuilds > 0 {
		res.RebuildMean = time.Duration((rebuildSecs1 - rebuildSecs0) / res.HeartbeatRebuilds * float64(time.Second))
	}

	rnd := rand.New(rand.NewPCG(1, 2))
	one := func() (*change, error) {
		s := rnd.IntN(o.Services)
		c, e := f.pick(rnd)
		return f.flip(ctx, c, s, e)
	}

	// Light load: one change at a time, each seen by every observer before the next.
	say("light load: %d changes one at a time...", o.LightChanges)
	tr.take()
	push0, err := meanParts(ctx, metricsURL, "meshfed_xds_change_to_push_seconds")
	if err != nil {
		return nil, err
	}
	for range o.LightChanges {
		ch, err := one()
		if err != nil {
			return nil, err
		}
		if err := waitDone(ctx, ch, 30*time.Second); err != nil {
			return nil, err
		}
	}
	lat, _ := tr.take()
	res.LightP50, res.LightP99 = quantile(lat, 0.5), quantile(lat, 0.99)
	push1, err := meanParts(ctx, metricsURL, "meshfed_xds_change_to_push_seconds")
	if err != nil {
		return nil, err
	}
	res.LightPushMean = push1.since(push0)

	// Burst: back-to-back changes.
	say("burst: %d changes back to back...", o.BurstChanges)
	var burst []*change
	var lastWrite time.Time
	push0, err = meanParts(ctx, metricsURL, "meshfed_xds_change_to_push_seconds")
	if err != nil {
		return nil, err
	}
	rb0, err := metric(ctx, metricsURL, "meshfed_xds_rebuild_seconds_count")
	if err != nil {
		return nil, err
	}
	for range o.BurstChanges {
		ch, err := one()
		if err != nil {
			return nil, err
		}
		burst, lastWrite = append(burst, ch), time.Now()
	}
	var lastSeen time.Time
	for _, ch := range burst {
		if err := waitDone(ctx, ch, time.Minute); err != nil {
			return nil, err
		}
		if ch.last.After(lastSeen) {
			lastSeen = ch.last
		}
	}
	lat, _ = tr.take()
	res.BurstLast, res.BurstP99 = lastSeen.Sub(lastWrite), quantile(lat, 0.99)
	if push1, err = meanParts(ctx, metricsURL, "meshfed_xds_change_to_push_seconds"); err != nil {
		return nil, err
	}
	res.BurstPushMean = push1.since(push0)
	rb1, err := metric(ctx, metricsURL, "meshfed_xds_rebuild_seconds_count")
	if err != nil {
		return nil, err
	}
	res.BurstRebuilds = rb1 - rb0

	// Churn at Rate for Duration.
	say("churn: %d changes/s for %s...", o.Rate, o.Duration)
	if u, err = startUsage(pid); err != nil {
		return nil, err
	}
	self, err := startUsage(os.Getpid())
	if err != nil {
		return nil, err
	}
	if rebuilds0, err = metric(ctx, metricsURL, "meshfed_xds_rebuild_seconds_count"); err != nil {
		return nil, err
	}
	stopProfile := o.profile(ctx, debugURL, "churn.cpu.pprof", "profile?seconds="+strconv.Itoa(max(1, int(o.Duration.Seconds()))))
	churnStart := time.Now()
	n := int(o.Duration.Seconds() * float64(o.Rate))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var writeErr atomic.Pointer[error]
	for i := range n {
		if err := sleep(ctx, time.Until(churnStart.Add(time.Duration(i)*time.Second/time.Duration(o.Rate)))); err != nil {
			return nil, err
		}
		s := rnd.IntN(o.Services)
		c, e := f.pick(rnd)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := f.flip(ctx, c, s, e); err != nil {
				writeErr.Store(&err)
			}
		}()
	}
	wg.Wait()
	res.ChurnRate = float64(n) / time.Since(churnStart).Seconds()
	stopProfile()
	if res.ChurnCPU, _, err = u.percent(); err != nil {
		return nil, err
	}
	if res.BenchCPU, _, err = self.percent(); err != nil {
		return nil, err
	}
	if rebuilds1, err = metric(ctx, metricsURL, "meshfed_xds_rebuild_seconds_count"); err != nil {
		return nil, err
	}
	res.ChurnRebuilds = rebuilds1 - rebuilds0
	if p := writeErr.Load(); p != nil {
		return nil, fmt.Errorf("churn write: %w", *p)
	}
	_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		_, unseen := tr.peek()
		return unseen == 0, nil
	})
	lat, res.ChurnUnseen = tr.take()
	res.ChurnP50, res.ChurnP99 = quantile(lat, 0.5), quantile(lat, 0.99)
	if res.RSS, err = proc.RSS(pid); err != nil {
		return nil, err
	}
	res.RSSParts = memParts(ctx, metricsURL)

	for _, st := range observers {
		st.close()
	}
	observers = nil

	// Fan-out: Streams streams of one service across the zones, one change at a time.
	// The baseline is read as the figure after the fan-out is: HeapSettle after the
	// streams before them left.
	if err := sleep(ctx, o.HeapSettle); err != nil {
		return nil, err
	}
	if res.HeapBase, err = heap(ctx, debugURL); err != nil {
		return nil, err
	}
	say("fan-out: %d streams of one service...", o.Streams)
	var fan []*stream
	defer func() {
		for _, st := range fan {
			st.close()
		}
	}()
	for i := range o.Streams {
		st, err := openStream(ctx, xdsAddr, 100000+i, selfZone(i%o.Zones), []int{0}, tr, nil)
		if err != nil {
			return nil, err
		}
		fan = append(fan, st)
	}
	if err := waitFirst(ctx, fan, agent); err != nil {
		return nil, err
	}
	if res.FanoutRSS, err = proc.RSS(pid); err != nil {
		return nil, err
	}
	if res.HeapFanout, err = heap(ctx, debugURL); err != nil {
		return nil, err
	}
	tr.take()
	if u, err = startUsage(pid); err != nil {
		return nil, err
	}
	stopProfile = o.profile(ctx, debugURL, "fanout.cpu.pprof", "profile?seconds=5")
	for range o.FanoutChanges {
		c, e := f.pick(rnd)
		ch, err := f.flip(ctx, c, 0, e)
		if err != nil {
			return nil, err
		}
		if err := waitDone(ctx, ch, time.Minute); err != nil {
			return nil, err
		}
	}
	_, cpu, err := u.percent()
	if err != nil {
		return nil, err
	}
	stopProfile()
	lat, _ = tr.take()
	res.FanoutStreams, res.FanoutP99, res.FanoutCPUChange = o.Streams, quantile(lat, 0.99), cpu/time.Duration(o.FanoutChanges)
	for _, st := range fan {
		st.close()
	}
	fan = nil
	if err := sleep(ctx, o.HeapSettle); err != nil {
		return nil, err
	}
	if res.HeapAfter, err = heap(ctx, debugURL); err != nil {
		return nil, err
	}
	res.HeartbeatErrors = f.heartbeatErrors.Load()
	tr.mu.Lock()
	res.Superseded = tr.superseded
	tr.mu.Unlock()
	if agent.Exited() {
		return nil, fmt.Errorf("agent exited: %w (log: %s)", agent.Failure(), agent.LogPath)
	}
	return res, nil
}

// histogram is a histogram's sum and count.
type histogram struct{ sum, count float64 }

// profile fetches the agent's profile at debugURL+"/debug/pprof/"+query into
// o.Dir/name in the background when o.Profile is set; the function it returns waits
// for it, and says where it went or why not.
func (o Options) profile(ctx context.Context, debugURL, name, query string) (wait func()) {
	if !o.Profile {
		return func() {}
	}
	done := make(chan error, 1)
	path := filepath.Join(o.Dir, name)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, debugURL+"/debug/pprof/"+query, nil)
		if err != nil {
			done <- err
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		if err == nil {
			err = os.WriteFile(path, b, 0o644)
		}
		done <- err
	}()
	return func() {
		if err := <-done; err != nil {
			fmt.Fprintf(o.Out, "fleetbench: profile %s: %v\n", name, err)
			return
		}
		fmt.Fprintf(o.Out, "fleetbench: profile written to %s\n", path)
	}
}

func meanParts(ctx context.Context, metricsURL, name string) (histogram, error) {
	sum, err := metric(ctx, metricsURL, name+"_sum")
	if err != nil {
		return histogram{}, err
	}
	count, err := metric(ctx, metricsURL, name+"_count")
	return histogram{sum, count}, err
}

// since is the mean of the observations made after old was read.
func (h histogram) since(old histogram) time.Duration {
	if h.count <= old.count {
		return 0
	}
	return time.Duration((h.sum - old.sum) / (h.count - old.count) * float64(time.Second))
}

// memParts is the Go runtime's account of the agent's memory, for the report.
func memParts(ctx context.Context, metricsURL string) string {
	var b strings.Builder
	for _, m := range []struct{ label, name string }{
		{"heap in use", "go_memstats_heap_inuse_bytes"}, {"heap idle", "go_memstats_heap_idle_bytes"},
		{"released", "go_memstats_heap_released_bytes"}, {"stacks", "go_memstats_stack_inuse_bytes"},
		{"runtime total", "go_memstats_sys_bytes"},
	} {
		v, err := metric(ctx, metricsURL, m.name)
		if err != nil {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.label + " " + mib(int64(v)))
	}
	return b.String()
}

// heap is the agent's live heap right after collections: its /debug/pprof/heap runs
// one (gc=1) before go_gc_heap_live_bytes is read, so that the figure does not
// depend on when the agent last collected.
func heap(ctx context.Context, agentURL string) (int64, error) {
	// Twice: buffers pooled (sync.Pool) survive one collection.
	for range 2 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, agentURL+"/debug/pprof/heap?gc=1", nil)
		if err != nil {
			return 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		resp.Body.Close()
	}
	v, err := metric(ctx, agentURL+"/metrics", "go_gc_heap_live_bytes")
	return int64(v), err
}

// startEtcd starts the hub's kind of etcd, serving clients over mTLS, and returns the
// credentials of a client (the benchmark's and the agent's).
func startEtcd(ctx context.Context, dir string) (*embedetcd.Server, etcdconn.Credentials, error) {
	var creds etcdconn.Credentials
	ca, err := pki.NewCA("fleetbench-etcd-ca", 24*time.Hour)
	if err != nil {
		return nil, creds, err
	}
	serverCert, serverKey, err := ca.Issue(pki.ServerTemplate("etcd", "127.0.0.1", "localhost"), 24*time.Hour)
	if err != nil {
		return nil, creds, err
	}
	clientCert, clientKey, err := ca.Issue(pki.ClientTemplate(selfCluster), 24*time.Hour)
	if err != nil {
		return nil, creds, err
	}
	tlsDir := filepath.Join(dir, "etcd-tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return nil, creds, err
	}
	files := map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": serverCert, "tls.key": serverKey}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(tlsDir, name), data, 0o600); err != nil {
			return nil, creds, err
		}
	}
	srv, err := embedetcd.Start(ctx, embedetcd.Options{DataDir: filepath.Join(dir, "etcd"),
		ClientTLS: &embedetcd.TLS{CertFile: filepath.Join(tlsDir, "tls.crt"), KeyFile: filepath.Join(tlsDir, "tls.key"),
			TrustedCAFile: filepath.Join(tlsDir, "ca.crt"), ClientCertAuth: true},
		// etcd logs every request's stats at warn: the benchmark's writes would drown the table.
		ZapLogger: zap.NewNop()})
	if err != nil {
		return nil, creds, err
	}
	return srv, etcdconn.Credentials{Endpoints: srv.Endpoints(), CA: ca.CertPEM, Cert: clientCert, Key: clientKey}, nil
}

// startAgent gives the agent's cluster its credentials Secret and starts `meshfed
// agent` with plaintext xDS on loopback. It returns once the agent is ready.
func startAgent(ctx context.Context, o Options, admin *rest.Config, creds etcdconn.Credentials) (*proc.Process, string, string, error) {
	cfg := rest.CopyConfig(admin)
	// client-go's default limiter (5 QPS, burst 10) would pace the setup's writes.
	cfg.QPS, cfg.Burst = 1000, 2000
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", "", err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hubinfo.Namespace}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return nil, "", "", fmt.Errorf("create namespace %s: %w", hubinfo.Namespace, err)
	}
	secret := agentcreds.Credentials{Cluster: selfCluster, Etcd: creds}.Secret(hubinfo.Namespace)
	if _, err := kube.CoreV1().Secrets(hubinfo.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return nil, "", "", fmt.Errorf("create the agent's credentials: %w", err)
	}
	kubeconfig := filepath.Join(o.Dir, "agent.kubeconfig")
	if err := localkube.WriteKubeconfig(kubeconfig, "member", admin); err != nil {
		return nil, "", "", err
	}
	ports, err := localkube.FreePorts(2)
	if err != nil {
		return nil, "", "", err
	}
	httpAddr, xdsAddr := "127.0.0.1:"+strconv.Itoa(ports[0]), "127.0.0.1:"+strconv.Itoa(ports[1])
	args := []string{"agent", "--kubeconfig", kubeconfig, "--identity", "fleetbench-agent", "--http-addr", httpAddr,
		"--metrics-addr", httpAddr, "--debug-addr", httpAddr, "--xds-addr", xdsAddr, "--log-format", "text"}
	var env []string
	if o.AgentMemoryLimit != "" {
		env = append(env, "GOMEMLIMIT="+o.AgentMemoryLimit)
	}
	p, err := proc.Start("agent", o.MeshfedBinary, args, filepath.Join(o.Dir, "agent.log"), env...)
	if err != nil {
		return nil, "", "", err
	}
	return p, xdsAddr, "http://" + httpAddr + "/metrics", nil
}

// waitFirst waits until every stream has had its first response.
func waitFirst(ctx context.Context, streams []*stream, agent *proc.Process) error {
	deadline := time.After(3 * time.Minute)
	for _, st := range streams {
		select {
		case <-st.first:
		case <-agent.Done():
			return fmt.Errorf("agent exited: %w (log: %s)", agent.Failure(), agent.LogPath)
		case <-deadline:
			return errors.New("streams got no first response within 3 minutes")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func waitDone(ctx context.Context, ch *change, timeout time.Duration) error {
	select {
	case <-ch.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("change of %s in %s unseen by some stream after %s", ch.addr, service(ch.svc), timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
