package etcdcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/proc"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
)

// certLifetime outlives any test or sandbox session.
const certLifetime = 10 * 365 * 24 * time.Hour

// RootUser is the common name of Files.RootCert: etcd's root user once auth is on.
const RootUser = "root"

// Options configure a cluster. Dir is required.
type Options struct {
	// Dir holds the members' data, certificates and logs. The caller owns it.
	Dir string
	// Members is the cluster size. Default 3.
	Members int
	// Binary is the etcd executable. Default: etcd in localkube.Assets().
	Binary string
	// Timeout bounds each wait for a healthy cluster. Default 1 minute.
	Timeout time.Duration
}

func (o *Options) setDefaults() error {
	if o.Dir == "" {
		return errors.New("etcdcluster: Options.Dir is required")
	}
	if o.Members == 0 {
		o.Members = 3
	}
	if o.Members < 1 {
		return fmt.Errorf("etcdcluster: %d members", o.Members)
	}
	if o.Binary == "" {
		dir, err := localkube.Assets()
		if err != nil {
			return fmt.Errorf("etcdcluster: %w", err)
		}
		o.Binary = filepath.Join(dir, "etcd")
	}
	if o.Timeout == 0 {
		o.Timeout = time.Minute
	}
	return nil
}

// Files are the cluster's PEM files, for the hub's --etcd-* flags.
type Files struct {
	// CA signs the members' serving and peer certificates and is the CA they trust
	// for client certificates: --etcd-ca-file and --etcd-client-ca-cert-file.
	CA    string
	CAKey string // --etcd-client-ca-key-file
	// RootCert and RootKey authenticate as RootUser: --etcd-cert-file, --etcd-key-file.
	RootCert string
	RootKey  string
}

// Member is one etcd process.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string

	dir     string
	process *proc.Process
	ended   bool // by Kill, StopMember or Stop: its exit is expected
}

// Cluster is a running etcd cluster.
type Cluster struct {
	Members []*Member
	Files   Files

	opts     Options
	ca       *pki.CA
	creds    etcdconn.Credentials
	mu       sync.Mutex // guards the members' processes
	stopOnce sync.Once
	// generation counts the clusters these members formed: Wipe forms a new one,
	// with a new cluster ID.
	generation int
}

// startAttempts allows for a port taken between choosing it and etcd binding it.
const startAttempts = 3

// Start runs the cluster and waits until it has a leader and serves linearizable
// reads. On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts}
	if err := c.writePKI(); err != nil {
		return nil, err
	}
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if err = c.startAll(ctx); err == nil {
			return c, nil
		}
		c.Stop()
		c.stopOnce = sync.Once{}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("start etcd cluster: %w", err)
}

func (c *Cluster) writePKI() error {
	dir := filepath.Join(c.opts.Dir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var err error
	if c.ca, err = pki.NewCA("meshfed-test-etcd-ca", certLifetime); err != nil {
		return err
	}
	caKey, err := c.ca.KeyPEM()
	if err != nil {
		return err
	}
	// One certificate serves clients and peers: it has both key usages.
	serverCert, serverKey, err := c.ca.Issue(pki.ServerTemplate("etcd", "localhost", "127.0.0.1"), certLifetime)
	if err != nil {
		return err
	}
	rootCert, rootKey, err := c.ca.Issue(pki.ClientTemplate(RootUser), certLifetime)
	if err != nil {
		return err
	}
	files := map[string][]byte{"ca.crt": c.ca.CertPEM, "ca.key": caKey, "server.crt": serverCert, "server.key": serverKey,
		"root.crt": rootCert, "root.key": rootKey}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	c.Files = Files{CA: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		RootCert: filepath.Join(dir, "root.crt"), RootKey: filepath.Join(dir, "root.key")}
	c.creds = etcdconn.Credentials{CA: c.ca.CertPEM, Cert: rootCert, Key: rootKey}
	return nil
}

func (c *Cluster) startAll(ctx context.Context) error {
	ports, err := localkube.FreePorts(2 * c.opts.Members)
	if err != nil {
		return err
	}
	c.Members = nil
	var initial []string
	for i := range c.opts.Members {
		m := &Member{Name: "etcd-" + strconv.Itoa(i), ClientURL: "https://127.0.0.1:" + strconv.Itoa(ports[2*i]),
			PeerURL: "https://127.0.0.1:" + strconv.Itoa(ports[2*i+1])}
		m.dir = filepath.Join(c.opts.Dir, m.Name)
		// A retry after a port clash starts over: a half-formed cluster's data would
		// name the old peers.
		if err := os.RemoveAll(m.dir); err != nil {
			return err
		}
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			return err
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	c.creds.Endpoints = c.Endpoints()
	for _, m := range c.Members {
		if err := c.startMember(m, strings.Join(initial, ",")); err != nil {
			return err
		}
	}
	return c.WaitHealthy(ctx)
}

func (c *Cluster) startMember(m *Member, initialCluster string) error {
	pkiDir := filepath.Join(c.opts.Dir, "pki")
	args := []string{
		"--name=" + m.Name,
		"--data-dir=" + filepath.Join(m.dir, "data"),
		"--listen-client-urls=" + m.ClientURL, "--advertise-client-urls=" + m.ClientURL,
		"--listen-peer-urls=" + m.PeerURL, "--initial-advertise-peer-urls=" + m.PeerURL,
		"--initial-cluster=" + initialCluster,
		"--initial-cluster-token=meshfed-test-" + strconv.Itoa(c.generation),
		"--initial-cluster-state=new", // ignored by a member that has data: a restart rejoins
		"--cert-file=" + filepath.Join(pkiDir, "server.crt"), "--key-file=" + filepath.Join(pkiDir, "server.key"),
		"--trusted-ca-file=" + filepath.Join(pkiDir, "ca.crt"), "--client-cert-auth",
		"--peer-cert-file=" + filepath.Join(pkiDir, "server.crt"), "--peer-key-file=" + filepath.Join(pkiDir, "server.key"),
		"--peer-trusted-ca-file=" + filepath.Join(pkiDir, "ca.crt"), "--peer-client-cert-auth",
		"--unsafe-no-fsync", // see doc.go
		"--log-level=warn",
	}
	p, err := proc.Start(m.Name, c.opts.Binary, args, filepath.Join(m.dir, "etcd.log"))
	if err != nil {
		return err
	}
	c.mu.Lock()
	m.process, m.ended = p, false
	c.mu.Unlock()
	return nil
}

// Endpoints are every member's client URL, in member order.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Client is a root client of the whole cluster; the caller closes it.
func (c *Cluster) Client(ctx context.Context) (*clientv3.Client, error) {
	return etcdconn.New(ctx, c.creds)
}

// Running reports whether member i's process runs.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.Members[i].process
	return p != nil && !p.Exited()
}

// Kill kills member i with SIGKILL and waits until it has exited.
func (c *Cluster) Kill(i int) { c.signal(i, syscall.SIGKILL) }

// StopMember stops member i cleanly (SIGTERM) and waits until it has exited.
func (c *Cluster) StopMember(i int) { c.signal(i, syscall.SIGTERM) }

func (c *Cluster) signal(i int, sig syscall.Signal) {
	c.mu.Lock()
	p := c.Members[i].process
	c.Members[i].ended = true
	c.mu.Unlock()
	if p != nil {
		p.Kill(sig)
	}
}

// Restart starts member i again, with its data, and waits until the cluster is
// healthy with it.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if c.Running(i) {
		return fmt.Errorf("etcdcluster: %s is running", c.Members[i].Name)
	}
	var initial []string
	for _, m := range c.Members {
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	if err := c.startMember(c.Members[i], strings.Join(initial, ",")); err != nil {
		return err
	}
	return c.WaitHealthy(ctx)
}

// Freeze stops every member without ending it (SIGSTOP): connections stay open and
// nothing answers, as a hung machine would. Thaw resumes them.
func (c *Cluster) Freeze() { c.signalAll(syscall.SIGSTOP) }

// Thaw resumes what Freeze stopped.
func (c *Cluster) Thaw() { c.signalAll(syscall.SIGCONT) }

func (c *Cluster) signalAll(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.Members {
		if m.process != nil {
			m.process.Signal(sig)
		}
	}
}

// Wipe loses the cluster's data, as a lost disk or a new cluster would: it kills every
// member, deletes its data, and forms a new cluster (a new cluster ID, revisions from
// 1, no users, no keys) on the same addresses, then waits until it is healthy.
func (c *Cluster) Wipe(ctx context.Context) error {
	var initial []string
	for i, m := range c.Members {
		c.Kill(i)
		if err := os.RemoveAll(filepath.Join(m.dir, "data")); err != nil {
			return err
		}
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	c.mu.Lock()
	c.generation++
	c.mu.Unlock()
	for _, m := range c.Members {
		if err := c.startMember(m, strings.Join(initial, ",")); err != nil {
			return err
		}
	}
	return c.WaitHealthy(ctx)
}

// RestartAll starts every member that is not running, with its data, and waits until
// the cluster is healthy: after a loss of quorum, no single restart can be.
func (c *Cluster) RestartAll(ctx context.Context) error {
	var initial []string
	for _, m := range c.Members {
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for i, m := range c.Members {
		if c.Running(i) {
			continue
		}
		if err := c.startMember(m, strings.Join(initial, ",")); err != nil {
			return err
		}
	}
	return c.WaitHealthy(ctx)
}

// Status is what one running member reports.
type Status struct {
	Member   int
	ID       uint64
	LeaderID uint64
	Revision int64
	RaftTerm uint64
}

// Statuses asks every running member for its status.
func (c *Cluster) Statuses(ctx context.Context) ([]Status, error) {
	cli, err := c.Client(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	var out []Status
	for i, m := range c.Members {
		if !c.Running(i) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := cli.Status(sctx, m.ClientURL)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", m.Name, err)
		}
		out = append(out, Status{Member: i, ID: resp.Header.MemberId, LeaderID: resp.Leader, Revision: resp.Header.Revision,
			RaftTerm: resp.RaftTerm})
	}
	return out, nil
}

// Leader returns the index of the member every running member agrees leads.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	statuses, err := c.Statuses(ctx)
	if err != nil {
		return -1, err
	}
	leader := -1
	for _, s := range statuses {
		if s.LeaderID == 0 {
			return -1, fmt.Errorf("%s has no leader", c.Members[s.Member].Name)
		}
		if s.LeaderID != statuses[0].LeaderID {
			return -1, errors.New("members disagree on the leader")
		}
		if s.ID == s.LeaderID {
			leader = s.Member
		}
	}
	if leader < 0 {
		return -1, errors.New("no running member is the leader")
	}
	return leader, nil
}

// WaitHealthy waits until every running member agrees on a leader and the cluster
// answers a linearizable read, failing early if a member's process died.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if err := c.exited(); err != nil {
			return err
		}
		if _, last = c.Leader(ctx); last == nil {
			last = c.read(ctx)
			if last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd cluster not healthy after %s: %w", c.opts.Timeout, last)
		case <-tick.C:
		}
	}
}

// exited reports a member that died on its own (not one Kill or StopMember ended).
func (c *Cluster) exited() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.Members {
		if m.process != nil && m.process.Exited() && !m.ended {
			return m.process.Failure()
		}
	}
	return nil
}

func (c *Cluster) read(ctx context.Context) error {
	cli, err := c.Client(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = cli.Get(rctx, "health")
	return err
}

// Stop ends every member. It is safe to call more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		var ps []*proc.Process
		for _, m := range c.Members {
			m.ended = true
			if m.process != nil {
				ps = append(ps, m.process)
			}
		}
		c.mu.Unlock()
		var wg sync.WaitGroup
		for _, p := range ps {
			wg.Go(func() { p.Stop(5 * time.Second) })
		}
		wg.Wait()
	})
}
