package federation

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// LeaderElectionID is the name of the hub replicas' Lease in hubinfo.Namespace.
const LeaderElectionID = "meshfed-hub"

// Defaults of the leader election, Kubernetes' own controllers' values.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// ErrLeaderElectionNeedsExternalEtcd refuses --leader-elect with the embedded etcd.
var ErrLeaderElectionNeedsExternalEtcd = errors.New("hub: --leader-elect needs an external etcd cluster: " +
	"with the embedded etcd every hub replica runs an etcd and a CA of its own, and agents would see a different " +
	"federation depending on the replica they reach (split brain); run an etcd cluster of 3 or 5 members and give " +
	"every replica --etcd-endpoints (every member), --etcd-ca-file, --etcd-cert-file, --etcd-key-file and the same " +
	"--etcd-client-ca-cert-file and --etcd-client-ca-key-file (see docs/operations.md, HA hub), or run one replica " +
	"without --leader-elect")

func (o *Options) setLeaderElectionDefaults() error {
	if !o.LeaderElection {
		return nil
	}
	if len(o.EtcdEndpoints) == 0 {
		return ErrLeaderElectionNeedsExternalEtcd
	}
	if o.LeaderElectionIdentity == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("hub: leader election identity: %w", err)
		}
		// Two replicas with one identity would both believe they lead.
		o.LeaderElectionIdentity = host + "_" + string(uuid.NewUUID())
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = DefaultRenewDeadline
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = DefaultRetryPeriod
	}
	// client-go's elector checks the same, but only once the manager starts.
	if o.RetryPeriod >= o.RenewDeadline || o.RenewDeadline >= o.LeaseDuration {
		return fmt.Errorf("hub: leader election needs retry period (%s) < renew deadline (%s) < lease duration (%s)",
			o.RetryPeriod, o.RenewDeadline, o.LeaseDuration)
	}
	return nil
}

// leaderElection sets the manager's election up when opts ask for one: the Lease lock
// with this replica's identity (controller-runtime's own lock has no settable identity,
// and an operator wants to read which replica leads), the timings, and the namespace
// the Lease lives in.
func leaderElection(ctx context.Context, opts *Options, mgr *ctrl.Options) error {
	if !opts.LeaderElection {
		return nil
	}
	cfg := rest.AddUserAgent(rest.CopyConfig(opts.KubeConfig), "meshfed-hub-leader-election")
	// One hung request must not cost the lease: as controller-runtime does, bound each
	// request well within the renew deadline.
	cfg.Timeout = max(opts.RenewDeadline/2, time.Second)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("hub leader election: %w", err)
	}
	// The Lease lives in the namespace the leader's hubConfig would create: without
	// this no replica could ever become the leader on a fresh API server.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hubinfo.Namespace}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("hub leader election: create namespace %s: %w", hubinfo.Namespace, err)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, hubinfo.Namespace, LeaderElectionID,
		kube.CoreV1(), kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: opts.LeaderElectionIdentity})
	if err != nil {
		return fmt.Errorf("hub leader election: %w", err)
	}
	mgr.LeaderElection = true
	mgr.LeaderElectionID = LeaderElectionID
	mgr.LeaderElectionNamespace = hubinfo.Namespace
	mgr.LeaderElectionResourceLockInterface = lock
	mgr.LeaseDuration, mgr.RenewDeadline, mgr.RetryPeriod = &opts.LeaseDuration, &opts.RenewDeadline, &opts.RetryPeriod
	// A replica stopped on purpose hands over at once instead of after LeaseDuration:
	// safe because the process ends as soon as Run returns.
	mgr.LeaderElectionReleaseOnCancel = true
	return nil
}

// viewReader runs the hub's reader of etcd on every replica, leader or not.
type viewReader struct {
	run func(context.Context) error
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: reading writes nothing.
func (r *viewReader) NeedLeaderElection() bool { return false }

// Start implements manager.Runnable.
func (r *viewReader) Start(ctx context.Context) error { return r.run(ctx) }

// viewSynced is ready once the view holds a complete list of etcd: a leader with it
// writes status from complete data, and a standby with it can take over at once.
func viewSynced(v *view.View) healthz.Checker {
	return func(*http.Request) error {
		if !v.HasSynced() {
			return errors.New("the hub's view of etcd has not synced")
		}
		return nil
	}
}
