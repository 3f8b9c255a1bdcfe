package localkube

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/proc"
	"github.com/meshfed/meshfed/internal/kube/crds"
)

// certLifetime outlives any test or sandbox session.
const certLifetime = 10 * 365 * 24 * time.Hour

// Options configure one control plane. The zero value of every field but Dir is usable.
type Options struct {
	// Name identifies the control plane in kubeconfigs and logs. Default "kube".
	Name string
	// Dir holds the control plane's data, certificates, logs and kubeconfig. Required;
	// the caller owns it (tests pass t.TempDir()).
	Dir string
	// InstallCRDs installs meshfed's CRDs and the MCS ServiceExport CRD once the API
	// server is ready.
	InstallCRDs bool
	// StartTimeout bounds the wait for a ready API server. Default 2 minutes, which a
	// loaded 2-core machine starting several control planes needs.
	StartTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = "kube"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	return o
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	// Name as given in Options.
	Name string
	// Dir as given in Options.
	Dir string
	// Config authenticates as an administrator (group system:masters).
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file equivalent to Config.
	Kubeconfig string

	ca        *pki.CA
	etcd      *proc.Process
	apiserver *proc.Process
	stopOnce  sync.Once
}

// adminUser is the administrator's user name; system:masters bypasses RBAC.
const adminUser = "meshfed-admin"

// errAddrInUse marks a start that lost a race for a port.
var errAddrInUse = errors.New("address already in use")

// startAttempts allows for a port taken between choosing it and binding it.
const startAttempts = 3

// Start runs a control plane and waits until its API server is ready. On error nothing
// is left running.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	opts = opts.withDefaults()
	if opts.Dir == "" {
		return nil, errors.New("start control plane: Options.Dir is required")
	}
	bin, err := Assets()
	if err != nil {
		return nil, fmt.Errorf("start control plane %q: %w", opts.Name, err)
	}
	var cp *ControlPlane
	for attempt := 1; ; attempt++ {
		cp, err = start(ctx, bin, opts)
		if err == nil || !errors.Is(err, errAddrInUse) || attempt == startAttempts {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("start control plane %q: %w", opts.Name, err)
	}
	if opts.InstallCRDs {
		all, err := crds.Meshfed()
		if err == nil {
			var mcs []*apiextensionsv1.CustomResourceDefinition
			mcs, err = crds.MCS()
			all = append(all, mcs...)
		}
		if err == nil {
			err = crds.Install(ctx, cp.Config, all, opts.StartTimeout)
		}
		if err != nil {
			cp.Stop()
			return nil, fmt.Errorf("start control plane %q: %w", opts.Name, err)
		}
	}
	return cp, nil
}

// StartAll starts control planes concurrently. If any fails, all are stopped.
func StartAll(ctx context.Context, opts []Options) ([]*ControlPlane, error) {
	cps := make([]*ControlPlane, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i := range opts {
		wg.Go(func() { cps[i], errs[i] = Start(ctx, opts[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, cp := range cps {
			if cp != nil {
				cp.Stop()
			}
		}
		return nil, err
	}
	return cps, nil
}

func start(ctx context.Context, bin string, opts Options) (*ControlPlane, error) {
	cp := &ControlPlane{Name: opts.Name, Dir: opts.Dir, Kubeconfig: filepath.Join(opts.Dir, "admin.kubeconfig")}
	ok := false
	defer func() {
		if !ok {
			cp.Stop()
		}
	}()
	pkiDir := filepath.Join(opts.Dir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return nil, err
	}
	var err error
	if cp.ca, err = pki.NewCA(opts.Name+"-ca", certLifetime); err != nil {
		return nil, err
	}
	servingCert, servingKey, err := cp.ca.Issue(pki.ServerTemplate("kube-apiserver",
		"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "127.0.0.1", "::1"), certLifetime)
	if err != nil {
		return nil, err
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	// SEC1, not PKCS#8: --service-account-key-file reads the public key out of it and
	// takes only PKCS#1 or SEC1 private keys.
	saKey, err := pki.EncodeECKey(key)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"ca.crt": cp.ca.CertPEM, "serving.crt": servingCert, "serving.key": servingKey, "sa.key": saKey,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(pkiDir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	cp.etcd, err = proc.Start(opts.Name+"/etcd", filepath.Join(bin, "etcd"), []string{
		"--name=" + opts.Name,
		"--data-dir=" + filepath.Join(opts.Dir, "etcd"),
		"--listen-client-urls=" + etcdClient, "--advertise-client-urls=" + etcdClient,
		"--listen-peer-urls=" + etcdPeer, "--initial-advertise-peer-urls=" + etcdPeer,
		"--initial-cluster=" + opts.Name + "=" + etcdPeer,
		// A throwaway control plane needs no durability; fsync dominates its latency.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, filepath.Join(opts.Dir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	cp.apiserver, err = proc.Start(opts.Name+"/kube-apiserver", filepath.Join(bin, "kube-apiserver"), []string{
		"--etcd-servers=" + etcdClient,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--cert-dir=" + pkiDir,
		"--tls-cert-file=" + filepath.Join(pkiDir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(pkiDir, "serving.key"),
		"--client-ca-file=" + filepath.Join(pkiDir, "ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(pkiDir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(pkiDir, "sa.key"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		// No kubelets and no Service network: nothing for these to reconcile.
		"--endpoint-reconciler-type=none",
		// Flow control costs CPU that a 2-core machine running several servers lacks.
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	}, filepath.Join(opts.Dir, "kube-apiserver.log"))
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := cp.ca.Issue(pki.ClientTemplate(adminUser, "system:masters"), certLifetime)
	if err != nil {
		return nil, err
	}
	cp.Config = &rest.Config{
		Host: "https://127.0.0.1:" + strconv.Itoa(ports[2]),
		TLSClientConfig: rest.TLSClientConfig{
			CAData: cp.ca.CertPEM, CertData: certPEM, KeyData: keyPEM,
		},
		QPS: 100, Burst: 200,
	}
	if err := cp.waitReady(ctx, opts.StartTimeout); err != nil {
		return nil, err
	}
	if err := WriteKubeconfig(cp.Kubeconfig, opts.Name, cp.Config); err != nil {
		return nil, err
	}
	ok = true
	return cp, nil
}

func (cp *ControlPlane) waitReady(ctx context.Context, timeout time.Duration) error {
	client, err := discovery.NewDiscoveryClientForConfig(cp.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, p := range []*proc.Process{cp.etcd, cp.apiserver} {
			if p.Exited() {
				err := p.Failure()
				if strings.Contains(err.Error(), errAddrInUse.Error()) {
					return fmt.Errorf("%w: %w", errAddrInUse, err)
				}
				return err
			}
		}
		body, err := client.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after %s (log: %s): %w", timeout, cp.apiserver.LogPath, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// UserConfig returns a config that authenticates as user in groups, with a client
// certificate from the control plane's CA. RBAC decides what it may do.
func (cp *ControlPlane) UserConfig(user string, groups ...string) (*rest.Config, error) {
	certPEM, keyPEM, err := cp.ca.Issue(pki.ClientTemplate(user, groups...), certLifetime)
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(cp.Config)
	cfg.CertData, cfg.KeyData = certPEM, keyPEM
	return cfg, nil
}

// Stop ends the API server, then etcd. It is safe to call more than once.
func (cp *ControlPlane) Stop() {
	cp.stopOnce.Do(func() {
		for _, p := range []*proc.Process{cp.apiserver, cp.etcd} {
			if p != nil {
				p.Stop(5 * time.Second)
			}
		}
	})
}

// WriteKubeconfig writes cfg, which must carry inline TLS data, as a kubeconfig whose
// cluster, user and context are all called name.
func WriteKubeconfig(path, name string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// FreePorts returns n distinct loopback ports that were free a moment ago. Whoever
// binds one may still lose a race for it, and should retry.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	low := ephemeralLow()
	for range n {
		var l net.Listener
		var err error
		for range 200 {
			// Below the kernel's ephemeral range: no outgoing connection and no
			// listener on port 0 ever takes the port while its owner restarts (a
			// process restarted on the same address must find it free).
			port := portsFloor + rand.IntN(low-portsFloor)
			if !handOut(port) {
				err = fmt.Errorf("port %d was handed out already", port)
				continue // given to another caller of this process, maybe not bound yet
			}
			if l, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// handedOut holds every port FreePorts returned in this process: a port handed out is
// never handed out again, since its taker may bind it long after (a sandbox picks an
// agent's address before it starts the hub that must know it).
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// handOut claims port for a caller, unless it was claimed before.
func handOut(port int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports[port] {
		return false
	}
	handedOut.ports[port] = true
	return true
}

// portsFloor is the lowest port FreePorts hands out.
const portsFloor = 20000

// ephemeralLow is the start of the kernel's ephemeral port range (32768 when it
// cannot be read).
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > portsFloor+1000 {
				return n
			}
		}
	}
	return 32768
}
