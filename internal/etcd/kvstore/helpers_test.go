package kvstore

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor is the deadline for every condition a test waits on: generous, as a
// loaded 2-core CI machine can stall a reconnect for seconds.
const waitFor = 30 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	t.Cleanup(cancel)
	return ctx
}

// startEtcd runs a real etcd for one test and returns it with a direct client.
func startEtcd(t *testing.T) (*embedetcd.Server, *clientv3.Client) {
	t.Helper()
	srv, err := embedetcd.Start(testContext(t), embedetcd.Options{
		DataDir:       t.TempDir(),
		UnsafeNoFsync: true,
		ZapLogger:     zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv, newClient(t, srv.Endpoints()[0])
}

// startBenchEtcd runs a real etcd for a benchmark; the caller closes it.
func startBenchEtcd(b *testing.B) (*embedetcd.Server, error) {
	srv, err := embedetcd.Start(b.Context(), embedetcd.Options{DataDir: b.TempDir(), UnsafeNoFsync: true, ZapLogger: zap.NewNop()})
	if err == nil {
		b.Cleanup(srv.Close)
	}
	return srv, err
}

// newClient returns a client of endpoint that reconnects quickly, so that a
// restored proxy is noticed in well under a second.
func newClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		t.Fatalf("new client of %s: %v", endpoint, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// groundTruth returns every key/value under prefix, straight from etcd.
func groundTruth(t *testing.T, c *clientv3.Client, prefix string) map[string]string {
	t.Helper()
	resp, err := c.Get(testContext(t), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get %s: %v", prefix, err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

func mustPut(t *testing.T, c *clientv3.Client, key, value string) {
	t.Helper()
	if _, err := c.Put(testContext(t), key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func mustDelete(t *testing.T, c *clientv3.Client, key string) {
	t.Helper()
	if _, err := c.Delete(testContext(t), key); err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
}

// diff describes how two key/value maps differ, or returns "".
func diff(got, want map[string]string) string {
	var out []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("missing %s=%q", k, w))
		} else if g != w {
			out = append(out, fmt.Sprintf("%s=%q, want %q", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("extra %s=%q", k, g))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// recorder is an Observer that keeps the mirrored state and a log of every
// delivery. Tests write a unique value in every Put, so a (key, value) pair
// stands for one (key, ModRevision): a pair delivered twice is a duplicate.
type recorder struct {
	mu        sync.Mutex
	state     map[string]string
	delivered map[string]int // "key=value" -> times delivered
	deletes   map[string]int // key -> OnDelete calls
	synced    int
}

func newRecorder() *recorder {
	return &recorder{state: map[string]string{}, delivered: map[string]int{}, deletes: map[string]int{}}
}

func (r *recorder) OnUpsert(key string, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state[key] = value
	r.delivered[key+"="+value]++
}

func (r *recorder) OnDelete(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.state, key)
	r.deletes[key]++
}

func (r *recorder) OnSynced() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.synced++
}

func (r *recorder) snapshot() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.state)
}

func (r *recorder) syncs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.synced
}

// duplicates lists (key, value) pairs delivered more than once.
func (r *recorder) duplicates() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for kv, n := range r.delivered {
		if n > 1 {
			out = append(out, fmt.Sprintf("%s (x%d)", kv, n))
		}
	}
	sort.Strings(out)
	return out
}

// waitMirrors waits until rec holds exactly the ground truth under prefix.
func waitMirrors(t *testing.T, rec *recorder, c *clientv3.Client, prefix string) {
	t.Helper()
	testutil.Eventually(t, waitFor, "observer to mirror etcd", testutil.Check(func() (bool, string) {
		d := diff(rec.snapshot(), groundTruth(t, c, prefix))
		return d == "", d
	}))

}

func decodeString(_ string, value []byte) (string, error) { return string(value), nil }

// proxy is a TCP proxy between a client and etcd that a test can cut (close
// every connection and refuse new ones) and restore: a network partition the
// client sees as connection errors.
type proxy struct {
	t        *testing.T
	listener net.Listener
	target   string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup

	accepted atomic.Int64
}

func newProxy(t *testing.T, targetURL string) *proxy {
	t.Helper()
	u, err := url.Parse(targetURL)
	if err != nil {
		t.Fatalf("parse %s: %v", targetURL, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &proxy{t: t, listener: l, target: u.Host, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.close)
	return p
}

// URL is the endpoint clients use to reach etcd through the proxy.
func (p *proxy) URL() string { return "http://" + p.listener.Addr().String() }

func (p *proxy) acceptLoop() {
	for {
		in, err := p.listener.Accept()
		if err != nil {
			return // listener closed
		}
		p.accepted.Add(1)
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.conns[in] = struct{}{}
		p.conns[out] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(out, in) })
		p.wg.Go(func() { p.pipe(in, out) })
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	// Closing both ends makes the other direction's copy return too.
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Cut closes every proxied connection and refuses new ones until Restore. It
// returns how many connections it closed.
func (p *proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	n := len(p.conns)
	for c := range p.conns {
		c.Close()
	}
	return n
}

// Restore lets connections through again.
func (p *proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func (p *proxy) close() {
	p.listener.Close()
	p.Cut()
	p.wg.Wait()
}

// restartableEtcd is a real etcd that a test stops and starts again on the same
// client address: with the same data (a restart), with none (the disk was
// lost), or with a copy of its data taken earlier (a restore from a backup).
// Clients keep their address and reconnect to whichever store answers there.
type restartableEtcd struct {
	t         *testing.T
	clientURL string
	peerURL   string
	dir       string
	srv       *embedetcd.Server
}

// startRestartableEtcd starts an etcd on a fixed loopback client address.
func startRestartableEtcd(t *testing.T) *restartableEtcd {
	t.Helper()
	e := &restartableEtcd{t: t, clientURL: freeURL(t), peerURL: freeURL(t)}
	e.start(t.TempDir())
	t.Cleanup(func() {
		if e.srv != nil {
			e.srv.Close()
		}
	})
	return e
}

// freeURL returns an http URL on a loopback port that is free right now, outside the
// kernel's ephemeral range, so that etcd restarted on it finds it free still.
func freeURL(t *testing.T) string {
	t.Helper()
	ports, err := localkube.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return "http://127.0.0.1:" + strconv.Itoa(ports[0])
}

// start starts etcd with the data in dir; an empty dir makes a new cluster.
func (e *restartableEtcd) start(dir string) {
	e.t.Helper()
	srv, err := embedetcd.Start(testContext(e.t), embedetcd.Options{
		DataDir:       dir,
		ClientURL:     e.clientURL,
		PeerURL:       e.peerURL,
		UnsafeNoFsync: true,
		ZapLogger:     zap.NewNop(),
	})
	if err != nil {
		e.t.Fatalf("start etcd in %s: %v", dir, err)
	}
	e.srv, e.dir = srv, dir
}

// stop stops etcd; its data stays in e.dir.
func (e *restartableEtcd) stop() {
	e.srv.Close()
	e.srv = nil
}

// backup copies the data of the stopped etcd, as a volume snapshot would, and
// returns the copy's directory.
func (e *restartableEtcd) backup() string {
	e.t.Helper()
	dst := filepath.Join(e.t.TempDir(), "backup")
	if err := os.CopyFS(dst, os.DirFS(e.dir)); err != nil {
		e.t.Fatalf("copy %s: %v", e.dir, err)
	}
	return dst
}

// replaceStore stops etcd and starts a new, empty cluster on the same client
// address. The new member has another peer URL, so another member and cluster
// ID, as a new external cluster or a hub that lost its disk would.
func (e *restartableEtcd) replaceStore() {
	e.t.Helper()
	e.stop()
	e.peerURL = freeURL(e.t)
	e.start(e.t.TempDir())
}

// clusterID returns the ID of the cluster that answers c now.
func clusterID(t *testing.T, c *clientv3.Client) uint64 {
	t.Helper()
	resp, err := c.Get(testContext(t), "/any")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	return resp.Header.ClusterId
}
