package publish

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"
	mcslisters "sigs.k8s.io/mcs-api/pkg/client/listers/apis/v1alpha1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/admit"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// Sink takes the records to write into etcd; *kvstore.Writer satisfies it. The
// Publisher calls it from one goroutine at a time, and expects each call to return
// quickly (queue the write, do not perform it).
type Sink interface {
	// Upsert sets key to value.
	Upsert(key string, value []byte)
	// Delete removes key.
	Delete(key string)
	// MarkSynced writes the cluster's synced marker once every earlier update is
	// written.
	MarkSynced()
}

// View is what the Publisher reads of the hub's state in etcd.
type View interface {
	// GlobalServices returns the hub's current global services. The Publisher does
	// not modify what it gets.
	GlobalServices() []model.GlobalService
	// PublishedServices returns the keys of this cluster's service records now in
	// etcd (keyspace.ServiceEndpoints of Options.Cluster), whoever wrote them: a
	// previous run of the agent included.
	PublishedServices() []string
	// WaitSynced blocks until the view holds a complete first list, or ctx is done.
	WaitSynced(ctx context.Context) error
}

// Options configure a Publisher. Cluster, Kube, Sink and View are required.
type Options struct {
	// Cluster is this member cluster's name, a DNS-1123 label.
	Cluster string
	// Kube reads Services, EndpointSlices and Nodes.
	Kube kubernetes.Interface
	// MCS reads ServiceExports (multicluster.x-k8s.io/v1alpha1). Optional: when it
	// is nil, or the cluster does not serve that API when Run starts, ServiceExports
	// are ignored (logged once) and only GlobalServices export Services. A CRD
	// installed later is noticed when the agent restarts.
	MCS mcsclient.Interface
	// Sink receives the records.
	Sink Sink
	// View is the hub's state.
	View View
	// Logger receives the Publisher's logs. Default: logr.FromContextOrDiscard of
	// the context passed to Run.
	Logger logr.Logger
	// Local marks the Publisher that feeds the agent's own View (every replica runs
	// one, so that the cluster's own proxies see its changes without the hub) rather
	// than the hub: it keeps out of the publish metrics and logs its decisions at V(1).
	Local bool
	// ResyncPeriod is how often every Service is re-evaluated, and keys no longer
	// exported are pruned, even without events: a safety net, as events already
	// drive every change. Default 10 minutes; negative disables it.
	ResyncPeriod time.Duration
}

const (
	defaultResyncPeriod = 10 * time.Minute
	// maxRetries bounds the retries of a service whose record cannot be built; a
	// later event about it starts again.
	maxRetries = 5
	// discoveryRetry bounds the wait between attempts to learn whether the
	// ServiceExport API is served.
	discoveryRetryBase = 500 * time.Millisecond
	discoveryRetryMax  = 30 * time.Second
)

// Indexes of the EndpointSlice informer.
const (
	// indexByService maps "<namespace>/<service>" to the Service's slices.
	indexByService = "service"
	// indexByNode maps a node name to the slices with an endpoint on that node that
	// takes its zone from the node.
	indexByNode = "node"
)

// errInvalidAccounts is logged when a Service's ServiceAccountsAnnotation names
// something that is not a service account.
var errInvalidAccounts = errors.New("publish: invalid service account names")

// errForeignKey is logged when the View lists a key the Publisher may not delete.
var errForeignKey = errors.New("publish: foreign key")

// fullPass is the work item that re-evaluates every Service and prunes; every
// other item is the namespace and name of one Service.
var fullPass = types.NamespacedName{}

// Publisher publishes the exported Services of one member cluster. Create it with
// New and call Run once.
type Publisher struct {
	opts    Options
	started atomic.Bool

	mu sync.Mutex
	// queue is nil until Run creates it.
	queue workqueue.TypedRateLimitingInterface[types.NamespacedName]
	// seen holds, per queued item, when the earliest event not yet handled about it
	// arrived: what a record changed by handling the item says in ChangedAt, and
	// where the publish latency starts.
	seen map[types.NamespacedName]time.Time
	// inflight holds, per key handed to the Sink and not yet acknowledged by it
	// (Written), the timings of that value.
	inflight map[string]inflight

	// Set by Run before any event handler or pass runs.
	log      logr.Logger
	services corelisters.ServiceLister
	nodes    corelisters.NodeLister
	slices   cache.Indexer
	pods     cache.Indexer                  // trimmed to their service accounts (slimPod)
	exports  mcslisters.ServiceExportLister // nil: ServiceExports are ignored

	// Owned by whichever goroutine runs passes: Run until the first pass is done,
	// then the worker.
	published map[string]published
	endpoints int
}

// published is what the Publisher last handed the Sink for a key.
type published struct {
	// content is the value without ChangedAt, which an equal record rebuilt later
	// must not make a write.
	content   []byte
	endpoints int
}

// change is when handling a work item began: the event that caused it arrived at
// seen (the item was taken from the queue at dequeued when nothing says when).
type change struct {
	seen, dequeued time.Time
}

// inflight is a value handed to the Sink, waiting for Written.
type inflight struct {
	value []byte
	change
	handed time.Time
}

// New checks opts and returns a Publisher.
func New(opts Options) (*Publisher, error) {
	switch {
	case opts.Kube == nil:
		return nil, errors.New("publish: Options.Kube is required")
	case opts.Sink == nil:
		return nil, errors.New("publish: Options.Sink is required")
	case opts.View == nil:
		return nil, errors.New("publish: Options.View is required")
	}
	if err := keyspace.ValidateCluster(opts.Cluster); err != nil {
		return nil, fmt.Errorf("publish: Options.Cluster: %w", err)
	}
	if opts.ResyncPeriod == 0 {
		opts.ResyncPeriod = defaultResyncPeriod
	}
	return &Publisher{opts: opts, published: map[string]published{},
		seen: map[types.NamespacedName]time.Time{}, inflight: map[string]inflight{}}, nil
}

// GlobalServicesChanged tells the Publisher that View.GlobalServices changed: every
// Service is re-evaluated. It does not block and is safe from any goroutine, at any
// time; before Run it is not needed (the first pass reads the view anyway) and is a
// no-op, as it is once Run has returned.
func (p *Publisher) GlobalServicesChanged() {
	p.add(fullPass)
}

// add queues item, noting when its first unhandled event arrived. It is a no-op
// before Run.
func (p *Publisher) add(item types.NamespacedName) {
	now := time.Now()
	p.mu.Lock()
	q := p.queue
	if q != nil {
		if _, ok := p.seen[item]; !ok {
			p.seen[item] = now
		}
	}
	p.mu.Unlock()
	if q != nil {
		q.Add(item)
	}
}

// takeSeen returns and forgets when the earliest unhandled event about item
// arrived, or dequeued when none is noted (a periodic pass, a retry).
func (p *Publisher) takeSeen(item types.NamespacedName, dequeued time.Time) change {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.seen[item]
	if !ok {
		return change{seen: dequeued, dequeued: dequeued}
	}
	delete(p.seen, item)
	return change{seen: at, dequeued: dequeued}
}

// Written tells the Publisher that the Sink wrote value at key (for a
// *kvstore.Writer: that etcd acknowledged the Put; see WriterOptions.OnWritten). It
// observes the publish latency of that value, if the Publisher handed it over and
// nothing newer replaced it since. Safe from any goroutine; keys the Publisher did
// not write are ignored.
func (p *Publisher) Written(key string, value []byte) {
	now := time.Now()
	p.mu.Lock()
	f, ok := p.inflight[key]
	if ok && bytes.Equal(f.value, value) {
		delete(p.inflight, key)
	} else {
		ok = false
	}
	p.mu.Unlock()
	if !ok || p.opts.Local {
		return
	}
	observeStages(p.opts.Cluster, f.seen, f.dequeued, f.handed, now)
}

// Run publishes until ctx is done, then returns nil. It returns an error if called
// twice, or if View.WaitSynced fails while ctx is not done.
func (p *Publisher) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return fmt.Errorf("publish: cluster %s: Run called twice", p.opts.Cluster)
	}
	p.log = p.opts.Logger
	if p.log.GetSink() == nil {
		p.log = logr.FromContextOrDiscard(ctx)
	}
	p.log = p.log.WithValues("cluster", p.opts.Cluster)

	ctx, cancel := context.WithCancel(ctx)
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName](),
		workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: p.queueName()},
	)
	p.mu.Lock()
	p.queue = queue
	p.mu.Unlock()

	// Teardown order matters: informers stop only when ctx is cancelled, and
	// Shutdown waits for them; the worker stops only when the queue shuts down.
	var (
		worker sync.WaitGroup
		kube   informers.SharedInformerFactory
		mcs    mcsinformers.SharedInformerFactory
	)
	defer func() {
		cancel()
		queue.ShutDown()
		worker.Wait()
		if kube != nil {
			kube.Shutdown()
		}
		if mcs != nil {
			mcs.Shutdown()
		}
	}()

	exportsServed := p.serviceExportsServed(ctx)
	if ctx.Err() != nil {
		return nil
	}

	kube = informers.NewSharedInformerFactoryWithOptions(p.opts.Kube, 0, informers.WithTransform(trim))
	services := kube.Core().V1().Services()
	nodes := kube.Core().V1().Nodes()
	sliceInformer := kube.InformerFor(&discoveryv1.EndpointSlice{}, newSliceInformer)
	podInformer := kube.InformerFor(&corev1.Pod{}, newPodInformer)
	p.services = services.Lister()
	p.nodes = nodes.Lister()
	p.slices = sliceInformer.GetIndexer()
	p.pods = podInformer.GetIndexer()
	handlers := map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		services.Informer(): p.serviceHandler(),
		nodes.Informer():    p.nodeHandler(),
		sliceInformer:       p.sliceHandler(),
		podInformer:         p.podHandler(),
	}
	if exportsServed {
		mcs = mcsinformers.NewSharedInformerFactoryWithOptions(p.opts.MCS, 0, mcsinformers.WithTransform(trim))
		exports := mcs.Multicluster().V1alpha1().ServiceExports()
		p.exports = exports.Lister()
		handlers[exports.Informer()] = p.serviceExportHandler()
	}
	var synced []cache.InformerSynced
	for informer, handler := range handlers {
		if _, err := informer.AddEventHandler(handler); err != nil {
			return fmt.Errorf("publish: cluster %s: add event handler: %w", p.opts.Cluster, err)
		}
		synced = append(synced, informer.HasSynced)
	}
	kube.Start(ctx.Done())
	if mcs != nil {
		mcs.Start(ctx.Done())
	}

	// Publish nothing until both sides are complete: a partial cache would unexport
	// what it has not seen yet, a partial view would miss stale keys.
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil
	}
	p.log.V(1).Info("Informer caches synced, waiting for the view")
	if err := p.opts.View.WaitSynced(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("publish: cluster %s: wait for the view: %w", p.opts.Cluster, err)
	}

	now := time.Now()
	upserts, deletes := p.runFullPass(change{seen: now, dequeued: now})
	p.opts.Sink.MarkSynced()
	p.log.Info("Initial publish done", "services", len(p.published), "endpoints", p.endpoints,
		"upserts", upserts, "deletes", deletes, "serviceExports", exportsServed)

	if p.opts.ResyncPeriod > 0 {
		queue.AddAfter(fullPass, p.opts.ResyncPeriod)
	}
	// One worker: a record costs microseconds to build from the caches and the Sink
	// only queues, and one worker keeps a full pass from racing a single service.
	worker.Go(func() {
		for p.processNext(queue) {
		}
	})
	<-ctx.Done()
	return nil
}

// serviceExportsServed reports whether the cluster serves ServiceExports. It retries
// errors other than "not found" until ctx is done.
func (p *Publisher) serviceExportsServed(ctx context.Context) bool {
	if p.opts.MCS == nil {
		p.log.Info("No MCS client, ServiceExports are ignored")
		return false
	}
	gv := mcsv1alpha1.GroupVersion.String()
	backoff := wait.Backoff{Duration: discoveryRetryBase, Factor: 2, Jitter: 0.1, Cap: discoveryRetryMax, Steps: math.MaxInt32}
	for {
		list, err := p.opts.MCS.Discovery().ServerResourcesForGroupVersion(gv)
		if err == nil || apierrors.IsNotFound(err) {
			if err == nil && slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool {
				return r.Name == "serviceexports"
			}) {
				return true
			}
			p.log.Info("ServiceExport API not served, ServiceExports are ignored until the agent restarts", "groupVersion", gv)
			return false
		}
		errorsTotal.WithLabelValues(p.opts.Cluster, reasonDiscovery).Inc()
		delay := backoff.Step()
		p.log.Error(err, "Cannot tell whether the ServiceExport API is served, will retry", "groupVersion", gv, "after", delay)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
	}
}

// processNext handles one work item; it reports false once the queue is shut down.
func (p *Publisher) processNext(queue workqueue.TypedRateLimitingInterface[types.NamespacedName]) bool {
	item, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(item)
	at := p.takeSeen(item, time.Now())

	if item == fullPass {
		upserts, deletes := p.runFullPass(at)
		p.log.V(1).Info("Full pass done", "services", len(p.published), "upserts", upserts, "deletes", deletes)
		queue.Forget(item)
		if p.opts.ResyncPeriod > 0 {
			queue.AddAfter(fullPass, p.opts.ResyncPeriod)
		}
		return true
	}

	err := p.syncService(item, at)
	if err == nil {
		queue.Forget(item)
		return true
	}
	errorsTotal.WithLabelValues(p.opts.Cluster, reasonEncode).Inc()
	if n := queue.NumRequeues(item); n < maxRetries {
		p.log.V(1).Info("Cannot publish service, will retry", "service", item, "attempt", n+1, "error", err.Error())
		// The retry still publishes the change that arrived then.
		p.mu.Lock()
		if prev, ok := p.seen[item]; !ok || at.seen.Before(prev) {
			p.seen[item] = at.seen
		}
		p.mu.Unlock()
		queue.AddRateLimited(item)
		return true
	}
	p.log.Error(err, "Cannot publish service, giving up until it changes", "service", item)
	queue.Forget(item)
	return true
}

// syncService makes the record of one Service what its current state says; at is
// when the change that queued it arrived.
func (p *Publisher) syncService(nn types.NamespacedName, at change) error {
	// Names come from API objects, but a Service name in an EndpointSlice label is
	// not validated by the API server; keyspace panics on invalid names.
	if keyspace.ValidateNamespace(nn.Namespace) != nil || keyspace.ValidateName(nn.Name) != nil {
		p.log.V(1).Info("Ignoring invalid service name", "service", nn)
		return nil
	}
	key := keyspace.ServiceEndpoints(p.opts.Cluster, nn.Namespace, nn.Name)
	svc, err := p.services.Services(nn.Namespace).Get(nn.Name)
	if apierrors.IsNotFound(err) {
		p.unpublish(key)
		return nil
	}
	if err != nil {
		return err
	}
	exportedBy := Exporters(svc, p.opts.Cluster, p.opts.View.GlobalServices(), p.hasServiceExport(nn))
	if len(exportedBy) == 0 {
		p.unpublish(key)
		return nil
	}
	_, err = p.publish(key, svc, exportedBy, at)
	return err
}

// runFullPass re-evaluates every Service, then deletes every key of this cluster,
// known to the Publisher or to the View, that is not exported now; at is when the
// pass was asked for. It returns the numbers of upserts and deletes handed to the
// Sink.
func (p *Publisher) runFullPass(at change) (upserts, deletes int) {
	globals := p.opts.View.GlobalServices()
	svcs, _ := p.services.List(labels.Everything()) // a lister never fails
	slices.SortFunc(svcs, func(a, b *corev1.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	want := map[string]bool{}
	for _, svc := range svcs {
		nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
		exportedBy := Exporters(svc, p.opts.Cluster, globals, p.hasServiceExport(nn))
		if len(exportedBy) == 0 {
			continue
		}
		key := keyspace.ServiceEndpoints(p.opts.Cluster, svc.Namespace, svc.Name)
		// Wanted even if it cannot be built now: its last good value stays.
		want[key] = true
		// A Service's own event still queued is handled here: its record says
		// when that event arrived if it came before the pass was asked for.
		svcAt := p.takeSeen(nn, at.dequeued)
		if at.seen.Before(svcAt.seen) {
			svcAt = at
		}
		changed, err := p.publish(key, svc, exportedBy, svcAt)
		if err != nil {
			errorsTotal.WithLabelValues(p.opts.Cluster, reasonEncode).Inc()
			p.log.Error(err, "Cannot publish service", "service", nn)
		}
		if changed {
			upserts++
		}
	}

	stale := map[string]bool{}
	for key := range p.published {
		if !want[key] {
			stale[key] = true
		}
	}
	for _, key := range p.opts.View.PublishedServices() {
		if want[key] || stale[key] {
			continue
		}
		// Never touch a key outside this cluster's services, whatever the view says.
		if k, err := keyspace.Parse(key); err != nil || k.Kind != keyspace.KindServiceEndpoints || k.Cluster != p.opts.Cluster {
			if err == nil {
				err = fmt.Errorf("%w: %s is not under %s", errForeignKey, key, keyspace.ClusterServices(p.opts.Cluster))
			}
			errorsTotal.WithLabelValues(p.opts.Cluster, reasonBadKey).Inc()
			p.log.Error(err, "View lists a key that is not one of this cluster's services, leaving it alone", "key", key)
			continue
		}
		stale[key] = true
	}
	for _, key := range slices.Sorted(maps.Keys(stale)) {
		p.delete(key)
		deletes++
	}
	return upserts, deletes
}

// publish builds svc's record and hands it to the Sink unless it is unchanged (but
// for ChangedAt). It reports whether it did. at is when the change being handled
// arrived: what the record's ChangedAt says if it changed.
func (p *Publisher) publish(key string, svc *corev1.Service, exportedBy []string, at change) (bool, error) {
	objs, err := p.slices.ByIndex(indexByService, svc.Namespace+"/"+svc.Name)
	if err != nil {
		return false, fmt.Errorf("list endpoint slices of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	epSlices := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		epSlices = append(epSlices, o.(*discoveryv1.EndpointSlice))
	}
	rec := Build(svc, epSlices, p.nodeZones(epSlices), exportedBy)
	p.labelEndpoints(&rec)
	var invalid []string
	rec.ServiceAccounts, invalid = ServiceAccounts(svc, epSlices, p.podAccount(svc.Namespace))
	if len(invalid) > 0 {
		errorsTotal.WithLabelValues(p.opts.Cluster, reasonAnnotation).Inc()
		p.log.Error(errInvalidAccounts, "Ignoring invalid entries of the Service's annotation: each must be a service account name",
			"service", svc.Namespace+"/"+svc.Name, "annotation", v1.ServiceAccountsAnnotation, "invalid", invalid)
	}
	content, err := model.Encode(&rec)
	if err != nil {
		return false, fmt.Errorf("encode service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	rec.ChangedAt = at.seen.UTC()
	value, err := model.Encode(&rec)
	if err != nil {
		return false, fmt.Errorf("encode service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	if err := p.withinLimits(&rec, value); err != nil {
		// Every reader would refuse it: the last value written stays, and the
		// operator is told what to fix.
		overLimitTotal.WithLabelValues(p.opts.Cluster).Inc()
		p.log.Error(err, "Not publishing a service over the cluster's publish limits, keeping its last value", "key", key)
		return false, nil
	}
	prev, existed := p.published[key]
	if existed && bytes.Equal(prev.content, content) {
		return false, nil
	}
	p.mu.Lock()
	p.inflight[key] = inflight{value: value, change: at, handed: time.Now()}
	p.mu.Unlock()
	p.opts.Sink.Upsert(key, value)
	p.published[key] = published{content: content, endpoints: len(rec.Endpoints)}
	p.endpoints += len(rec.Endpoints) - prev.endpoints
	p.updateGauges()
	p.countOp(opUpsert)
	if existed {
		p.log.V(1).Info("Service updated", "key", key, "endpoints", len(rec.Endpoints))
	} else {
		p.decisionLog().Info("Service exported", "key", key, "exportedBy", rec.ExportedBy, "endpoints", len(rec.Endpoints))
	}
	return true, nil
}

// limitsView is a View that knows this cluster's publish limits (*view.View).
type limitsView interface {
	Cluster(name string) (view.Cluster, bool)
}

// withinLimits checks a record against this cluster's publish limits, as every
// reader will (package admit): a value over MaxValueBytes or a record with more
// endpoints than MaxEndpointsPerService is refused.
func (p *Publisher) withinLimits(rec *model.ServiceEndpoints, value []byte) error {
	var info *model.ClusterInfo
	if lv, ok := p.opts.View.(limitsView); ok {
		if c, ok := lv.Cluster(p.opts.Cluster); ok {
			info = c.Info
		}
	}
	limits := admit.LimitsOf(info)
	switch {
	case len(value) > limits.ValueBytes:
		return fmt.Errorf("service %s/%s encodes to %d bytes, over the cluster's limit of %d (MeshCluster spec limits.maxValueBytes)",
			rec.Namespace, rec.Name, len(value), limits.ValueBytes)
	case len(rec.Endpoints) > limits.EndpointsPerService:
		return fmt.Errorf("service %s/%s has %d endpoints, over the cluster's limit of %d (MeshCluster spec limits.maxEndpointsPerService)",
			rec.Namespace, rec.Name, len(rec.Endpoints), limits.EndpointsPerService)
	}
	return nil
}

// unpublish deletes key if the Publisher published it.
func (p *Publisher) unpublish(key string) {
	if _, ok := p.published[key]; ok {
		p.delete(key)
	}
}

// delete hands the Sink a Delete of key, which must be one of this cluster's
// service keys.
func (p *Publisher) delete(key string) {
	p.mu.Lock()
	delete(p.inflight, key)
	p.mu.Unlock()
	p.opts.Sink.Delete(key)
	p.endpoints -= p.published[key].endpoints
	delete(p.published, key)
	p.updateGauges()
	p.countOp(opDelete)
	p.decisionLog().Info("Service unexported", "key", key)
}

func (p *Publisher) updateGauges() {
	if p.opts.Local {
		return
	}
	exportedServices.WithLabelValues(p.opts.Cluster).Set(float64(len(p.published)))
	publishedEndpoints.WithLabelValues(p.opts.Cluster).Set(float64(p.endpoints))
}

func (p *Publisher) countOp(op string) {
	if !p.opts.Local {
		publishOpsTotal.WithLabelValues(p.opts.Cluster, op).Inc()
	}
}

// decisionLog logs what is exported: once per cluster, by the hub's Publisher.
func (p *Publisher) decisionLog() logr.Logger {
	if p.opts.Local {
		return p.log.V(1)
	}
	return p.log
}

func (p *Publisher) queueName() string {
	if p.opts.Local {
		return "publish-local-" + p.opts.Cluster
	}
	return "publish-" + p.opts.Cluster
}

// hasServiceExport reports whether a ServiceExport of nn exists and is not being
// deleted.
func (p *Publisher) hasServiceExport(nn types.NamespacedName) bool {
	if p.exports == nil {
		return false
	}
	se, err := p.exports.ServiceExports(nn.Namespace).Get(nn.Name)
	return err == nil && se.DeletionTimestamp == nil
}

// nodeZones returns the zone of every node that an endpoint of slices without a
// zone of its own runs on ("" for a node without a zone or not in the cache).
func (p *Publisher) nodeZones(epSlices []*discoveryv1.EndpointSlice) map[string]string {
	zones := map[string]string{}
	for _, s := range epSlices {
		for _, name := range nodesForZone(s) {
			if _, done := zones[name]; done {
				continue
			}
			if node, err := p.nodes.Get(name); err == nil {
				zones[name] = node.Labels[corev1.LabelTopologyZone]
			} else {
				zones[name] = ""
			}
		}
	}
	return zones
}

// nodesForZone returns the names of the nodes that endpoints of s without a zone
// of their own run on.
func nodesForZone(s *discoveryv1.EndpointSlice) []string {
	var names []string
	for _, e := range s.Endpoints {
		if deref(e.Zone) == "" && deref(e.NodeName) != "" && !slices.Contains(names, *e.NodeName) {
			names = append(names, *e.NodeName)
		}
	}
	return names
}

func newSliceInformer(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
	return discoveryinformers.NewFilteredEndpointSliceInformer(c, metav1.NamespaceAll, resync,
		cache.Indexers{
			indexByService: func(obj any) ([]string, error) {
				if nn, ok := sliceService(obj); ok {
					return []string{nn.String()}, nil
				}
				return nil, nil
			},
			indexByNode: func(obj any) ([]string, error) {
				if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
					return nodesForZone(s), nil
				}
				return nil, nil
			},
			indexByPod: podsOfSlice,
		},
		// Only slices of a Service matter; the others are not even cached.
		func(o *metav1.ListOptions) { o.LabelSelector = discoveryv1.LabelServiceName },
	)
}

// trim drops what the Publisher never reads from cached objects: managed fields
// everywhere, all of a Node but its name and zone, and all of a Pod but its name and
// service account.
func trim(obj any) (any, error) {
	if node, ok := obj.(*corev1.Node); ok {
		slim := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: node.Name, UID: node.UID, ResourceVersion: node.ResourceVersion,
		}}
		if zone, ok := node.Labels[corev1.LabelTopologyZone]; ok {
			slim.Labels = map[string]string{corev1.LabelTopologyZone: zone}
		}
		return slim, nil
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		return slimPod(pod), nil
	}
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// Event handlers. Objects of an informer's initial list are left to the first pass,
// which runs once every cache holds them.

func (p *Publisher) enqueue(nn types.NamespacedName, ok bool) {
	if ok && nn.Name != "" {
		p.add(nn)
	}
}

func (p *Publisher) serviceHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial {
				p.enqueue(objectName(obj))
			}
		},
		UpdateFunc: func(_, obj any) { p.enqueue(objectName(obj)) },
		DeleteFunc: func(obj any) { p.enqueue(objectName(obj)) },
	}
}

func (p *Publisher) serviceExportHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial {
				p.enqueue(objectName(obj))
			}
		},
		// Only its existence matters, and deletion starts when it gets a timestamp;
		// status updates by an MCS controller change nothing here.
		UpdateFunc: func(oldObj, obj any) {
			o, ok1 := oldObj.(metav1.Object)
			n, ok2 := obj.(metav1.Object)
			if ok1 && ok2 && (o.GetDeletionTimestamp() == nil) != (n.GetDeletionTimestamp() == nil) {
				p.enqueue(objectName(obj))
			}
		},
		DeleteFunc: func(obj any) { p.enqueue(objectName(obj)) },
	}
}

func (p *Publisher) sliceHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial {
				p.enqueue(sliceService(obj))
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			oldNN, oldOK := sliceService(oldObj)
			nn, ok := sliceService(obj)
			p.enqueue(nn, ok)
			if oldOK && oldNN != nn {
				p.enqueue(oldNN, oldOK)
			}
		},
		DeleteFunc: func(obj any) { p.enqueue(sliceService(obj)) },
	}
}

// nodeHandler re-evaluates the Services with endpoints that take their zone from a
// node whose zone appeared, changed or vanished.
func (p *Publisher) nodeHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial {
				p.enqueueNode(obj)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			o, ok1 := oldObj.(*corev1.Node)
			n, ok2 := obj.(*corev1.Node)
			if ok1 && ok2 && o.Labels[corev1.LabelTopologyZone] != n.Labels[corev1.LabelTopologyZone] {
				p.enqueueNode(obj)
			}
		},
		DeleteFunc: p.enqueueNode,
	}
}

func (p *Publisher) enqueueNode(obj any) {
	nn, ok := objectName(obj)
	if !ok {
		return
	}
	objs, _ := p.slices.ByIndex(indexByNode, nn.Name) // the index exists
	for _, o := range objs {
		p.enqueue(sliceService(o))
	}
}

// objectName returns the namespace and name of an informer's object or tombstone.
func objectName(obj any) (types.NamespacedName, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}, true
}

// sliceService returns the Service an EndpointSlice (or its tombstone) belongs to.
func sliceService(obj any) (types.NamespacedName, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: s.Namespace, Name: s.Labels[discoveryv1.LabelServiceName]}, true
}
