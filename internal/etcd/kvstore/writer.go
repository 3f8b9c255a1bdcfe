package kvstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// KV is the part of the etcd client a Writer writes with. *clientv3.Client
// satisfies it. Get only reads keys the Writer wrote, to check that the store
// still holds them.
type KV interface {
	Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error)
	Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error)
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
}

// WriterOptions configures a Writer. Client is required; setDefaults documents
// the defaults of the rest.
type WriterOptions struct {
	// Name labels the Writer's metrics and logs; unique per process. Default
	// "default".
	Name string
	// Client writes the keys.
	Client KV

	// LeaseTTL, when positive, binds every key to a lease with this TTL
	// (rounded up to whole seconds), held by a concurrency.Session. Zero: keys
	// are not bound to a lease and outlive the Writer.
	LeaseTTL time.Duration
	// SessionClient holds the lease. Default: Client, if it is a
	// *clientv3.Client; required when LeaseTTL is set and Client is not.
	SessionClient *clientv3.Client
	// RevokeOnClose makes Close revoke the lease, deleting every bound key at
	// once. Default false: the lease is left to expire after LeaseTTL.
	RevokeOnClose bool

	// SyncedKey is the key MarkSynced writes once every earlier update is in
	// etcd, e.g. keyspace.ClusterSynced(cluster). Upserts to it are refused.
	// Empty: MarkSynced writes nothing and only releases WaitSynced.
	SyncedKey string

	// OwnedPrefixes are prefixes the Writer owns whole: no one else writes
	// under them. After finding that the store was restored from a backup
	// (or replaced), the Writer deletes every key under them that it does not
	// hold, as a backup brings back keys deleted since. Default none: the
	// Writer never deletes a key it was not told about. Pruning runs with
	// the store check, so it needs CheckInterval.
	OwnedPrefixes []string

	// WriteTimeout bounds one etcd request. Default 10s.
	WriteTimeout time.Duration
	// RetryBaseDelay is the first delay before retrying a failed write (per
	// key) or lease grant, doubled per failure up to RetryMaxDelay. Defaults
	// 100ms and 2s: a request to an unreachable etcd already waits up to
	// WriteTimeout for the connection, so a longer pause only delays the
	// first write after etcd is back (a lapsed heartbeat demotes a cluster).
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	// CheckInterval is how often the Writer checks that the store still holds
	// its latest write, so that a store recreated or restored from a backup
	// is republished (see the package doc). Default 5s; negative disables the
	// check (writes' response headers are still watched).
	CheckInterval time.Duration
	// Clock times retries and write latency, and stamps the synced marker.
	// Default: the real clock.
	Clock clock.WithTicker
	// Logger receives the Writer's logs. Default: logr.FromContextOrDiscard
	// of the context passed to Run.
	Logger logr.Logger
	// OnWritten, if set, is called after etcd acknowledged a Put of value at
	// key (an Upsert's value, which a later Upsert may already have replaced),
	// from Run's worker: it must return quickly and must not call the Writer.
	// It lets the caller time its writes end to end.
	OnWritten func(key string, value []byte)
}

// setDefaults fills unset optional fields (see the field docs) and checks the
// required ones.
func (o *WriterOptions) setDefaults() error {
	if o.Client == nil {
		return errors.New("kvstore: WriterOptions.Client is required")
	}
	if o.Name == "" {
		o.Name = "default"
	}
	if o.LeaseTTL > 0 && o.SessionClient == nil {
		c, ok := o.Client.(*clientv3.Client)
		if !ok {
			return errors.New("kvstore: WriterOptions.SessionClient is required with LeaseTTL when Client is not a *clientv3.Client")
		}
		o.SessionClient = c
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.RetryBaseDelay <= 0 {
		o.RetryBaseDelay = 100 * time.Millisecond
	}
	if o.RetryMaxDelay <= 0 {
		o.RetryMaxDelay = 2 * time.Second
	}
	o.RetryMaxDelay = max(o.RetryMaxDelay, o.RetryBaseDelay)
	if o.CheckInterval == 0 {
		o.CheckInterval = 5 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return nil
}

// Writer makes a set of etcd keys hold the values its callers last asked for.
// Create it with NewWriter, start it with Run, and always Close it.
type Writer struct {
	opts  WriterOptions
	queue workqueue.TypedRateLimitingInterface[string]

	// lifeCtx outlives Run so that Close can still revoke the lease.
	lifeCtx    context.Context
	cancelLife context.CancelFunc

	mu sync.Mutex
	// log is set by Run when Options.Logger is unset.
	log logr.Logger
	// desired holds every key the Writer owns; a deleted entry stays until
	// its Delete is written.
	desired map[string]*entry
	// written is the value last Put per key under the current lease. A
	// missing key means "not known to be in etcd".
	written map[string][]byte
	// version counts updates; each entry records the version it was set at.
	version uint64
	// gen counts leases and stores; a write begun under an older one does not
	// count.
	gen uint64
	// store is the etcd history the Writer's knowledge (written) refers to;
	// last is its latest write there, the one a recreated or restored store
	// is sure to lack.
	store storeID
	last  lastWrite
	// prunePending says OwnedPrefixes are to be cleared of keys the Writer
	// does not hold, after a republish.
	prunePending bool
	// lease is the lease to bind keys to; clientv3.NoLease without LeaseTTL,
	// and also while a lease is being (re)acquired.
	lease   clientv3.LeaseID
	session *concurrency.Session

	// barrier maps each key that must be written before the synced marker
	// to the version that must be reached.
	barrier map[string]uint64
	// syncRequested is set by MarkSynced; the marker must then be present
	// (and is rewritten after a lease loss).
	syncRequested bool
	// markerPending says the marker is yet to be written; markerSeq tells
	// a marker write from an older MarkSynced apart.
	markerPending bool
	markerSeq     uint64
	// syncedCh is closed once the pending marker has been written.
	syncedCh chan struct{}

	started, closed bool
	cancelRun       context.CancelFunc
	runDone         chan struct{}
	closeOnce       sync.Once
	closeErr        error
}

type entry struct {
	value   []byte
	deleted bool
	version uint64
}

// lastWrite is a write as the store recorded it: key held a value put at
// revision rev, or was deleted (absent) as of rev.
type lastWrite struct {
	key     string
	rev     int64
	deleted bool
}

// NewWriter checks opts and returns a Writer that queues updates but writes
// nothing until Run.
func NewWriter(opts WriterOptions) (*Writer, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	lifeCtx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		opts: opts,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](opts.RetryBaseDelay, opts.RetryMaxDelay),
			workqueue.TypedRateLimitingQueueConfig[string]{Clock: opts.Clock},
		),
		lifeCtx:    lifeCtx,
		cancelLife: cancel,
		log:        opts.Logger,
		desired:    map[string]*entry{},
		written:    map[string][]byte{},
		syncedCh:   make(chan struct{}),
		runDone:    make(chan struct{}),
	}
	if w.log.GetSink() == nil {
		w.log = logr.Discard()
	}
	return w, nil
}

// Upsert makes key hold value. It returns at once; the write happens in Run.
// The Writer keeps its own copy of value.
func (w *Writer) Upsert(key string, value []byte) {
	w.update(key, bytes.Clone(value), false)
}

// Delete makes key absent. It returns at once; the delete happens in Run.
func (w *Writer) Delete(key string) {
	w.update(key, nil, true)
}

func (w *Writer) update(key string, value []byte, deleted bool) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.logger().V(1).Info("Ignoring update after Close", "key", key)
		return
	}
	if key == "" || key == w.opts.SyncedKey {
		// etcd refuses the empty key, and the synced key belongs to
		// MarkSynced: either would be retried forever.
		w.mu.Unlock()
		w.logger().Error(nil, "Ignoring update of a key the Writer may not write", "key", key, "syncedKey", w.opts.SyncedKey)
		return
	}
	w.version++
	w.desired[key] = &entry{value: value, deleted: deleted, version: w.version}
	w.mu.Unlock()
	w.enqueue(key)
}

// MarkSynced asks for Options.SyncedKey to be written as soon as every update
// made before this call has been written. Call it after the initial set of
// keys has been queued. It returns at once; see WaitSynced.
func (w *Writer) MarkSynced() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.syncRequested = true
	w.requestMarkerLocked()
}

// WaitSynced blocks until the marker asked for by MarkSynced has been written
// (with no SyncedKey: until every update before MarkSynced has been written),
// or ctx is done. After a lease loss it blocks again until the marker has been
// rewritten.
func (w *Writer) WaitSynced(ctx context.Context) error {
	w.mu.Lock()
	ch := w.syncedCh
	w.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kvstore: writer %s: wait for synced marker: %w", w.opts.Name, ctx.Err())
	}
}

// requestMarkerLocked sets a barrier of every key not yet written and marks
// the marker pending behind it.
func (w *Writer) requestMarkerLocked() {
	w.barrier = map[string]uint64{}
	for key, e := range w.desired {
		if !w.isWrittenLocked(key, e) {
			w.barrier[key] = e.version
		}
	}
	if w.prunePending {
		// The keys a prune will delete are not known yet: the marker waits
		// for the prune, then for them.
		w.barrier[pruneBarrier] = 0
	}
	if !w.markerPending {
		w.markerPending = true
		select {
		case <-w.syncedCh:
			w.syncedCh = make(chan struct{})
		default:
		}
	}
	w.markerSeq++
	w.releaseMarkerLocked()
}

// releaseMarkerLocked queues the marker once its barrier is empty.
func (w *Writer) releaseMarkerLocked() {
	if !w.markerPending || len(w.barrier) > 0 {
		return
	}
	if w.opts.SyncedKey == "" {
		// Nothing to write: the barrier alone was asked for.
		w.markerPending = false
		close(w.syncedCh)
		return
	}
	// Add, unlike update, takes no lock of ours, and the queue never calls
	// back into the Writer, so calling it with w.mu held cannot deadlock.
	w.queue.Add(w.opts.SyncedKey)
}

func (w *Writer) enqueue(key string) {
	w.queue.Add(key)
	writerQueueDepth.WithLabelValues(w.opts.Name).Set(float64(w.queue.Len()))
}

func (w *Writer) logger() logr.Logger {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log
}

// Run writes queued updates, and holds the lease when LeaseTTL is set, until
// ctx is done; then it returns nil. It may be called once: once it has
// returned, updates are no longer written and only Close remains to be called.
func (w *Writer) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.started || w.closed {
		w.mu.Unlock()
		return fmt.Errorf("kvstore: writer %s: Run called twice or after Close", w.opts.Name)
	}
	w.started = true
	if w.opts.Logger.GetSink() == nil {
		w.log = logr.FromContextOrDiscard(ctx)
	}
	w.log = w.log.WithValues("writer", w.opts.Name)
	ctx, w.cancelRun = context.WithCancel(ctx)
	w.mu.Unlock()
	defer close(w.runDone)

	// One worker: writes are cheap next to the time a burst takes to merge,
	// and a single writer keeps per-key ordering trivially.
	var wg sync.WaitGroup
	wg.Go(func() {
		for w.processNext(ctx) {
		}
	})
	if w.opts.CheckInterval > 0 {
		wg.Go(func() { w.checkLoop(ctx) })
	}
	if w.opts.LeaseTTL > 0 {
		w.holdLease(ctx)
	} else {
		<-ctx.Done()
	}
	// Wake the worker; what is still queued is dropped, as Close would.
	w.queue.ShutDown()
	wg.Wait()
	return nil
}

// processNext writes one queued key; it reports false once the queue is shut
// down.
func (w *Writer) processNext(ctx context.Context) bool {
	key, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(key)
	defer writerQueueDepth.WithLabelValues(w.opts.Name).Set(float64(w.queue.Len()))

	var err error
	if w.opts.SyncedKey != "" && key == w.opts.SyncedKey {
		err = w.writeMarker(ctx)
	} else {
		err = w.write(ctx, key)
	}
	if err == nil {
		w.queue.Forget(key)
		return true
	}
	if ctx.Err() != nil {
		return true // shutting down; the queue is about to close
	}
	// Log the first failure of a key loudly and its retries quietly: an
	// unreachable etcd would otherwise fill the log.
	log := w.logger()
	if w.queue.NumRequeues(key) == 0 {
		log.Error(err, "Write failed, will retry", "key", key)
	} else {
		log.V(1).Info("Write failed again, will retry", "key", key, "attempts", w.queue.NumRequeues(key)+1, "error", err.Error())
	}
	w.queue.AddRateLimited(key)
	return true
}

// write makes etcd agree with the desired state of key.
func (w *Writer) write(ctx context.Context, key string) error {
	w.mu.Lock()
	e, ok := w.desired[key]
	if !ok {
		w.mu.Unlock()
		return nil // an earlier pass already wrote it
	}
	gen, lease := w.gen, w.lease
	if w.opts.LeaseTTL > 0 && lease == clientv3.NoLease {
		// No lease yet: holdLease queues every key again once it has one.
		w.mu.Unlock()
		return nil
	}
	if w.isWrittenLocked(key, e) {
		w.doneLocked(key, e.version, gen, e.value, false, nil)
		w.mu.Unlock()
		return nil
	}
	value, deleted, version := e.value, e.deleted, e.version
	w.mu.Unlock()

	op := opPut
	if deleted {
		op = opDelete
	}
	var hdr *etcdserverpb.ResponseHeader
	err := w.timed(ctx, op, func(ctx context.Context) error {
		if deleted {
			resp, err := w.opts.Client.Delete(ctx, key)
			if err != nil {
				return err
			}
			hdr = resp.Header
		} else {
			resp, err := w.opts.Client.Put(ctx, key, string(value), clientv3.WithLease(lease))
			if err != nil {
				return err
			}
			hdr = resp.Header
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s %q: %w", op, key, err)
	}

	w.mu.Lock()
	// A header from another store makes everything known so far stale (gen
	// moves on), this write included: it is queued again with all the others.
	s := w.observeLocked(hdr)
	w.doneLocked(key, version, gen, value, deleted, hdr)
	w.mu.Unlock()
	w.endSession(s)
	if !deleted && w.opts.OnWritten != nil {
		w.opts.OnWritten(key, value)
	}
	return nil
}

// timed runs one etcd request under WriteTimeout and records its latency and
// failure.
func (w *Writer) timed(ctx context.Context, op string, do func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, w.opts.WriteTimeout)
	defer cancel()
	start := w.opts.Clock.Now()
	err := do(ctx)
	writeDurationSeconds.WithLabelValues(w.opts.Name, op).Observe(w.opts.Clock.Since(start).Seconds())
	if err != nil {
		writeErrorsTotal.WithLabelValues(w.opts.Name, op).Inc()
	}
	return err
}

// isWrittenLocked says etcd holds e, as far as the Writer knows: e is a value
// and it was the last one Put under the current lease. A pending delete is
// never known to be written: the entry is dropped once it is.
func (w *Writer) isWrittenLocked(key string, e *entry) bool {
	v, ok := w.written[key]
	return ok && !e.deleted && bytes.Equal(v, e.value)
}

// doneLocked records that key reached version in etcd under lease generation
// gen, and releases the marker if that was the last key it waited for.
func (w *Writer) doneLocked(key string, version, gen uint64, value []byte, deleted bool, hdr *etcdserverpb.ResponseHeader) {
	if gen != w.gen {
		// The lease or the store changed while writing: the key was bound to
		// a dead lease or written to a store left behind, and has been queued
		// again.
		return
	}
	if hdr != nil {
		w.last = lastWrite{key: key, rev: hdr.Revision, deleted: deleted}
	}
	if deleted {
		delete(w.written, key)
		if e := w.desired[key]; e != nil && e.version == version {
			delete(w.desired, key)
		}
	} else {
		w.written[key] = value
	}
	if need, ok := w.barrier[key]; ok && version >= need {
		delete(w.barrier, key)
		w.releaseMarkerLocked()
	}
}

// syncedMarker is the value of the synced marker (docs/keyspace.md).
type syncedMarker struct {
	SyncedAt time.Time `json:"syncedAt"`
}

// writeMarker writes the synced marker if it is pending and its barrier is
// clear.
func (w *Writer) writeMarker(ctx context.Context) error {
	w.mu.Lock()
	if !w.markerPending || len(w.barrier) > 0 || (w.opts.LeaseTTL > 0 && w.lease == clientv3.NoLease) {
		w.mu.Unlock()
		return nil
	}
	gen, lease, seq := w.gen, w.lease, w.markerSeq
	w.mu.Unlock()

	value, err := json.Marshal(syncedMarker{SyncedAt: w.opts.Clock.Now().UTC()})
	if err != nil {
		return fmt.Errorf("encode synced marker: %w", err)
	}
	var hdr *etcdserverpb.ResponseHeader
	err = w.timed(ctx, opPut, func(ctx context.Context) error {
		resp, err := w.opts.Client.Put(ctx, w.opts.SyncedKey, string(value), clientv3.WithLease(lease))
		if err == nil {
			hdr = resp.Header
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("put synced marker %q: %w", w.opts.SyncedKey, err)
	}

	w.mu.Lock()
	s := w.observeLocked(hdr)
	defer w.endSession(s)
	defer w.mu.Unlock()
	if gen == w.gen {
		w.last = lastWrite{key: w.opts.SyncedKey, rev: hdr.Revision}
	}
	// A MarkSynced, lease change or store change during the write set a new
	// barrier; the marker is written again once that clears.
	if gen == w.gen && seq == w.markerSeq && w.markerPending {
		w.markerPending = false
		close(w.syncedCh)
		w.log.V(1).Info("Synced marker written", "key", w.opts.SyncedKey)
	}
	return nil
}

// holdLease keeps a session open until ctx is done, replacing it whenever it
// ends. The last session is left for Close to revoke or orphan.
func (w *Writer) holdLease(ctx context.Context) {
	bo := newBackoff(w.opts.RetryBaseDelay, w.opts.RetryMaxDelay)
	for {
		s, err := w.newSession(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			writeErrorsTotal.WithLabelValues(w.opts.Name, opLease).Inc()
			w.logger().Error(err, "Lease grant failed, will retry")
			if !sleep(ctx, w.opts.Clock, bo.Step()) {
				return
			}
			continue
		}
		bo = newBackoff(w.opts.RetryBaseDelay, w.opts.RetryMaxDelay)
		w.adopt(s)

		select {
		case <-ctx.Done():
			return
		case <-s.Done():
		}
		// The lease expired, was revoked, or could not be kept alive: the
		// keys bound to it are gone or about to be. Stop writing under it
		// until the next one.
		w.mu.Lock()
		w.lease = clientv3.NoLease
		w.session = nil
		w.mu.Unlock()
		w.logger().Info("Lease lost, rewriting all keys under a new one", "lease", int64(s.Lease()))
	}
}

// newSession grants a lease and keeps it alive. The grant is bounded by
// WriteTimeout; the session itself lives until Close (lifeCtx), not Run's ctx.
func (w *Writer) newSession(ctx context.Context) (*concurrency.Session, error) {
	ttl := int64(math.Ceil(w.opts.LeaseTTL.Seconds()))
	gctx, cancel := context.WithTimeout(ctx, w.opts.WriteTimeout)
	defer cancel()
	grant, err := w.opts.SessionClient.Grant(gctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("grant lease with TTL %ds: %w", ttl, err)
	}
	s, err := concurrency.NewSession(w.opts.SessionClient,
		concurrency.WithLease(grant.ID), concurrency.WithTTL(int(ttl)), concurrency.WithContext(w.lifeCtx))
	if err != nil {
		return nil, fmt.Errorf("keep lease %x alive: %w", grant.ID, err)
	}
	return s, nil
}

// adopt makes s's lease current: nothing is known to be written under it, so
// every desired key is queued again, and the marker, if it was asked for,
// waits for all of them.
func (w *Writer) adopt(s *concurrency.Session) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.session = s
	w.lease = s.Lease()
	w.gen++
	w.written = map[string][]byte{}
	for key := range w.desired {
		w.queue.Add(key)
	}
	if w.syncRequested {
		w.requestMarkerLocked()
	}
	w.log.V(1).Info("Holding lease", "lease", int64(s.Lease()), "keys", len(w.desired))
}

// Close stops Run, drops queued updates, and ends the lease: revoked with
// RevokeOnClose, otherwise left to expire. It returns the revoke's error, if
// any, and is safe to call more than once.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		cancel := w.cancelRun
		w.mu.Unlock()

		w.queue.ShutDown()
		if cancel != nil {
			cancel()
			<-w.runDone
		}

		w.mu.Lock()
		s := w.session
		w.session = nil
		w.mu.Unlock()
		if s != nil {
			if w.opts.RevokeOnClose {
				if err := s.Close(); err != nil {
					w.closeErr = fmt.Errorf("kvstore: writer %s: revoke lease %x: %w", w.opts.Name, s.Lease(), err)
				}
			} else {
				s.Orphan()
			}
		}
		w.cancelLife()
		writerQueueDepth.WithLabelValues(w.opts.Name).Set(0)
	})
	return w.closeErr
}

// observeLocked checks a response header against the store the Writer knows
// and republishes everything if it comes from another history. It returns the
// session to end (outside the lock), if any.
func (w *Writer) observeLocked(hdr *etcdserverpb.ResponseHeader) *concurrency.Session {
	before := w.store
	why := w.store.observe(hdr)
	if why == "" {
		return nil
	}
	w.log.Info("The store is not the one written to before, republishing every key", "reason", why,
		"clusterID", fmt.Sprintf("%x", before.clusterID), "revision", before.rev,
		"newClusterID", fmt.Sprintf("%x", w.store.clusterID), "newRevision", w.store.rev)
	return w.republishLocked(why)
}

// republishLocked forgets what the store was known to hold and queues every
// desired key again, the marker (if asked for) behind them. Under a lease, it
// also returns the session to end: a recreated store lacks the lease, and a
// restored one holds it with keys it should not have; holdLease then grants a
// new one and adopts it.
func (w *Writer) republishLocked(why string) *concurrency.Session {
	writerRepublishesTotal.WithLabelValues(w.opts.Name, why).Inc()
	// The check loop prunes; without it there is no prune to wait for.
	w.prunePending = len(w.opts.OwnedPrefixes) > 0 && w.opts.CheckInterval > 0
	w.gen++
	w.written = map[string][]byte{}
	w.last = lastWrite{}
	for key := range w.desired {
		w.queue.Add(key)
	}
	if w.syncRequested {
		w.requestMarkerLocked()
	}
	s := w.session
	if s != nil {
		w.session = nil
		w.lease = clientv3.NoLease
	}
	return s
}

// endSession stops keeping s's lease alive, without revoking it: holdLease
// sees s end and grants a new lease.
func (w *Writer) endSession(s *concurrency.Session) {
	if s != nil {
		s.Orphan()
	}
}

// checkLoop checks the store every CheckInterval until ctx is done.
func (w *Writer) checkLoop(ctx context.Context) {
	t := w.opts.Clock.NewTicker(w.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		if err := w.check(ctx); err != nil && ctx.Err() == nil {
			w.logger().V(1).Info("Store check failed, will retry", "error", err.Error())
		}
		if err := w.prune(ctx); err != nil && ctx.Err() == nil {
			w.logger().Error(err, "Pruning owned prefixes failed, will retry")
		}
	}
}

// check reads back the Writer's latest write. Within one history that write
// is still there as the Writer made it, whatever else happened; a store that
// was recreated, or restored from a backup taken before it, lacks it (or holds
// an older version of the key), and its response header may show another
// cluster or an older revision. Any of these republishes every key.
func (w *Writer) check(ctx context.Context) error {
	w.mu.Lock()
	last, gen := w.last, w.gen
	w.mu.Unlock()
	if last.key == "" {
		return nil // nothing written yet, or a republish is under way
	}
	var resp *clientv3.GetResponse
	err := w.timed(ctx, opCheck, func(ctx context.Context) error {
		var err error
		resp, err = w.opts.Client.Get(ctx, last.key, clientv3.WithKeysOnly())
		return err
	})
	if err != nil {
		return fmt.Errorf("read back %q: %w", last.key, err)
	}

	w.mu.Lock()
	s := w.observeLocked(resp.Header)
	if s == nil && gen == w.gen && w.last == last {
		present := len(resp.Kvs) > 0
		if present == last.deleted || (present && resp.Kvs[0].ModRevision != last.rev) {
			var got int64
			if present {
				got = resp.Kvs[0].ModRevision
			}
			w.log.Info("The store lost the latest write, republishing every key", "key", last.key,
				"revision", last.rev, "deleted", last.deleted, "present", present, "storeRevision", got)
			s = w.republishLocked(reasonWriteLost)
		}
	}
	w.mu.Unlock()
	w.endSession(s)
	return nil
}

// prune, when a republish asked for it, queues the delete of every key under
// OwnedPrefixes that the Writer does not hold, before the marker.
func (w *Writer) prune(ctx context.Context) error {
	w.mu.Lock()
	pending := w.prunePending
	w.mu.Unlock()
	if !pending {
		return nil
	}
	var stray []string
	for _, prefix := range w.opts.OwnedPrefixes {
		var resp *clientv3.GetResponse
		err := w.timed(ctx, opCheck, func(ctx context.Context) error {
			var err error
			resp, err = w.opts.Client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
			return err
		})
		if err != nil {
			return fmt.Errorf("list owned prefix %q: %w", prefix, err)
		}
		for _, kv := range resp.Kvs {
			stray = append(stray, string(kv.Key))
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.releaseMarkerLocked()
	defer delete(w.barrier, pruneBarrier)
	w.prunePending = false
	var deleted []string
	for _, key := range stray {
		if _, ok := w.desired[key]; ok || key == w.opts.SyncedKey {
			continue
		}
		w.version++
		w.desired[key] = &entry{deleted: true, version: w.version}
		if w.markerPending {
			w.barrier[key] = w.version
		}
		deleted = append(deleted, key)
	}
	for _, key := range deleted {
		w.queue.Add(key)
	}
	if len(deleted) > 0 {
		w.log.Info("Deleting keys the store holds but the Writer does not", "keys", len(deleted), "first", deleted[0])
	}
	return nil
}

// pruneBarrier holds the marker back until a pending prune has run; no real
// key is empty.
const pruneBarrier = ""
