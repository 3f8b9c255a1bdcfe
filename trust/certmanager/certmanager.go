package certmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	// Blank imports register the controllers and the CA issuer that Run starts.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"

	cmcontroller "github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshfed/meshfed/internal/kube/crds"
	"github.com/meshfed/meshfed/trust/internal/certmanagercrds"
	"github.com/meshfed/meshfed/trust/meshca"
)

// Names of the cert-manager controllers Run starts.
const (
	ClusterIssuersController = "clusterissuers"
	IssuerCAController       = "certificaterequests-issuer-ca"
	ApproverController       = "certificaterequests-approver"
)

// Options configure Run. The zero value is usable.
type Options struct {
	// Namespace is cert-manager's cluster resource namespace, where ClusterIssuers'
	// Secrets live, and the only namespace whose CertificateRequests the built-in
	// approver approves. Default meshca.DefaultNamespace (meshfed-system).
	Namespace string
	// Workers per controller. Default 2.
	Workers int
	// CRDTimeout bounds the wait for cert-manager's CRDs to be served. Default 2
	// minutes, which a loaded 2-core machine needs.
	CRDTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Namespace == "" {
		o.Namespace = meshca.DefaultNamespace
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.CRDTimeout <= 0 {
		o.CRDTimeout = 2 * time.Minute
	}
	return o
}

// CertManager is cert-manager's controllers running in this process.
type CertManager struct {
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// Done is closed when every controller and informer Run started has stopped, after
// ctx is done.
func (cm *CertManager) Done() <-chan struct{} { return cm.done }

// Err returns, once Done is closed, the first error a controller stopped with, if any.
func (cm *CertManager) Err() error {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	return cm.err
}

// Run installs cert-manager's CRDs on the API server cfg reaches, creates the cluster
// resource namespace, and starts cert-manager's controllers in this process: the CA
// ClusterIssuer controller and CA signer of CertificateRequests across the cluster,
// and the built-in approver in Options.Namespace only. It returns once their caches
// have synced, so that a CertificateRequest created afterwards is handled; they run
// until ctx is done (wait on Done).
//
// cfg must be serialisable as a kubeconfig (no custom Transport or Dial): cert-manager
// builds its own clients from one. Logs go to the logr.Logger in ctx.
func Run(ctx context.Context, cfg *rest.Config, opts Options) (*CertManager, error) {
	opts = opts.withDefaults()
	log := logr.FromContextOrDiscard(ctx).WithName("cert-manager")
	ctx = logr.NewContext(ctx, log)

	defs, err := certmanagercrds.Load()
	if err != nil {
		return nil, fmt.Errorf("run cert-manager: %w", err)
	}
	if err := crds.Install(ctx, cfg, defs, opts.CRDTimeout); err != nil {
		return nil, fmt.Errorf("run cert-manager: %w", err)
	}
	if err := ensureNamespace(ctx, cfg, opts.Namespace); err != nil {
		return nil, fmt.Errorf("run cert-manager: %w", err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	cm := &CertManager{done: make(chan struct{})}
	started, err := start(runCtx, cfg, opts)
	if err != nil {
		cancel()
		for _, g := range started.groups {
			g.shutdown()
		}
		return nil, fmt.Errorf("run cert-manager: %w", err)
	}
	log.Info("cert-manager controllers running", "namespace", opts.Namespace,
		"controllers", []string{ClusterIssuersController, IssuerCAController, ApproverController},
		"version", certmanagercrds.Version())

	var wg sync.WaitGroup
	for _, c := range started.controllers {
		wg.Go(func() {
			if err := c.ctrl.Run(opts.Workers, runCtx); err != nil {
				log.Error(err, "cert-manager controller stopped", "controller", c.name)
				cm.setErr(fmt.Errorf("cert-manager controller %s: %w", c.name, err))
			}
		})
	}
	go func() {
		<-runCtx.Done()
		wg.Wait()
		for _, g := range started.groups {
			g.shutdown()
		}
		cancel()
		close(cm.done)
	}()
	return cm, nil
}

func (cm *CertManager) setErr(err error) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if cm.err == nil {
		cm.err = err
	}
}

type namedController struct {
	name string
	ctrl cmcontroller.Interface
}

// group is one cert-manager ContextFactory's informers.
type group struct {
	start    func(stop <-chan struct{})
	synced   func(stop <-chan struct{}) bool
	shutdown func()
}

type started struct {
	controllers []namedController
	groups      []group
}

// start builds two cert-manager context factories: a cluster-wide one for the
// ClusterIssuer controller and the CA signer (cert-manager serves ClusterIssuers only
// when not confined to a namespace), and one confined to opts.Namespace for the
// approver, which approves every CertificateRequest it sees. Confining the approver
// means a CertificateRequest for the mesh root created in any other namespace is never
// approved, so never signed.
func start(ctx context.Context, cfg *rest.Config, opts Options) (started, error) {
	var s started
	dir, err := os.MkdirTemp("", "meshfed-cert-manager-")
	if err != nil {
		return s, err
	}
	// cert-manager reads the kubeconfig once, in NewContextFactory; the credentials
	// must not outlive that on disk.
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		return s, err
	}

	for _, spec := range []struct {
		namespace   string
		controllers []string
	}{
		{namespace: "", controllers: []string{ClusterIssuersController, IssuerCAController}},
		{namespace: opts.Namespace, controllers: []string{ApproverController}},
	} {
		factory, err := cmcontroller.NewContextFactory(ctx, cmcontroller.ContextOptions{
			Kubeconfig:         kubeconfig,
			KubernetesAPIQPS:   50,
			KubernetesAPIBurst: 100,
			Namespace:          spec.namespace,
			IssuerOptions:      cmcontroller.IssuerOptions{ClusterResourceNamespace: opts.Namespace},
		})
		if err != nil {
			return s, fmt.Errorf("cert-manager context: %w", err)
		}
		for _, name := range spec.controllers {
			construct, ok := cmcontroller.Known()[name]
			if !ok {
				return s, fmt.Errorf("cert-manager controller %q is not registered", name)
			}
			c, err := construct(factory)
			if err != nil {
				return s, fmt.Errorf("cert-manager controller %s: %w", name, err)
			}
			s.controllers = append(s.controllers, namedController{name: name, ctrl: c})
		}
		// The controllers registered their informers on the factory's shared
		// informer factories while being constructed; a built Context exposes them.
		cc, err := factory.Build()
		if err != nil {
			return s, fmt.Errorf("cert-manager context: %w", err)
		}
		s.groups = append(s.groups, group{
			start: func(stop <-chan struct{}) {
				cc.SharedInformerFactory.Start(stop)
				cc.KubeSharedInformerFactory.Start(stop)
			},
			synced: func(stop <-chan struct{}) bool {
				for _, ok := range cc.SharedInformerFactory.WaitForCacheSync(stop) {
					if !ok {
						return false
					}
				}
				for _, ok := range cc.KubeSharedInformerFactory.WaitForCacheSync(stop) {
					if !ok {
						return false
					}
				}
				return true
			},
			shutdown: func() {
				cc.SharedInformerFactory.Shutdown()
				cc.KubeSharedInformerFactory.Shutdown()
			},
		})
	}
	for _, g := range s.groups {
		g.start(ctx.Done())
	}
	for _, g := range s.groups {
		if !g.synced(ctx.Done()) {
			return s, errors.New("cert-manager informer caches did not sync before the context ended")
		}
	}
	return s, nil
}

func ensureNamespace(ctx context.Context, cfg *rest.Config, name string) error {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// writeKubeconfig writes cfg as a kubeconfig file (mode 0600).
func writeKubeconfig(cfg *rest.Config, path string) error {
	if cfg.Transport != nil || cfg.Dial != nil || cfg.WrapTransport != nil {
		return errors.New("rest.Config with a custom Transport, WrapTransport or Dial cannot be handed to cert-manager, which builds its clients from a kubeconfig")
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["hub"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host + cfg.APIPath,
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
		InsecureSkipTLSVerify:    cfg.Insecure,
		TLSServerName:            cfg.ServerName,
	}
	kc.AuthInfos["hub"] = &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.CertFile,
		ClientCertificateData: cfg.CertData,
		ClientKey:             cfg.KeyFile,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Impersonate:           cfg.Impersonate.UserName,
		ImpersonateUID:        cfg.Impersonate.UID,
		ImpersonateGroups:     cfg.Impersonate.Groups,
		ImpersonateUserExtra:  cfg.Impersonate.Extra,
		Username:              cfg.Username,
		Password:              cfg.Password,
		AuthProvider:          cfg.AuthProvider,
		Exec:                  cfg.ExecProvider,
	}
	kc.Contexts["hub"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: "hub"}
	kc.CurrentContext = "hub"
	return clientcmd.WriteToFile(*kc, path)
}
