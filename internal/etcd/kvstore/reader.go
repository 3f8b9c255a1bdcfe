package kvstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/utils/clock"
)

// ReadClient is the part of the etcd client a Reader uses. *clientv3.Client
// satisfies it.
type ReadClient interface {
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
	Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan
}

// Observer receives a Reader's view of a prefix. See the package doc for the
// guarantees on order and concurrency.
type Observer[T any] interface {
	// OnUpsert is called when key was created or changed to value.
	OnUpsert(key string, value T)
	// OnDelete is called when key, previously passed to OnUpsert, is gone.
	OnDelete(key string)
	// OnSynced is called after every completed list, the first one and each
	// re-list: the Observer then holds exactly the prefix's state at the list's
	// revision.
	OnSynced()
}

// VersionObserver is an Observer that also tracks which version of each key it
// holds and the revision its state reflects, so that it can be compared with
// the store (a Digest at that revision). A Reader calls these methods, like the
// Observer's, from its Run goroutine, when its Observer implements them.
type VersionObserver interface {
	// OnVersion is called for every version of a key the Reader processes,
	// after OnUpsert or OnDelete: with its ModRevision, also when Decode
	// rejected the value (the Observer keeps the last good one, but the store
	// holds this version), and with 0 when the key is gone (deleted or pruned).
	OnVersion(key string, modRev int64)
	// OnRevision is called when the Observer holds exactly the prefix's
	// versions at rev: after a complete list (after OnSynced) and after every
	// watch response that carried events (rev is then the last event's
	// revision; a response never splits one revision's events) or a progress
	// notification.
	OnRevision(rev int64)
	// OnResync is called before the list of a Resync: the Reader has
	// forgotten what it delivered and will deliver every key again; what the
	// Observer holds and the list does not deliver is gone, and the Observer
	// drops it at OnSynced.
	OnResync()
}

// ObserverFuncs adapts functions to an Observer; nil functions are skipped.
type ObserverFuncs[T any] struct {
	Upsert func(key string, value T)
	Delete func(key string)
	Synced func()
}

// OnUpsert calls f.Upsert if set.
func (f ObserverFuncs[T]) OnUpsert(key string, value T) {
	if f.Upsert != nil {
		f.Upsert(key, value)
	}
}

// OnDelete calls f.Delete if set.
func (f ObserverFuncs[T]) OnDelete(key string) {
	if f.Delete != nil {
		f.Delete(key)
	}
}

// OnSynced calls f.Synced if set.
func (f ObserverFuncs[T]) OnSynced() {
	if f.Synced != nil {
		f.Synced()
	}
}

// ReaderOptions configures a Reader. Client, Prefix, Decode and Observer are
// required; setDefaults documents the defaults of the rest.
type ReaderOptions[T any] struct {
	// Client lists and watches the store.
	Client ReadClient
	// Prefix is the key prefix to mirror, normally a keyspace prefix (ending
	// in '/'). It also labels the Reader's metrics.
	Prefix string
	// Decode turns a stored value into T. An error marks the value malformed:
	// it is skipped and the key keeps its last good value.
	Decode func(key string, value []byte) (T, error)
	// Observer receives the mirrored state.
	Observer Observer[T]

	// Logger receives the Reader's logs. Default: logr.FromContextOrDiscard of
	// the context passed to Run.
	Logger logr.Logger
	// Clock times retries and store checks. Default: the real clock.
	Clock clock.WithTicker
	// RetryBaseDelay is the first delay before a re-list, doubled after each
	// failure up to RetryMaxDelay. Defaults 100ms and 2s: a list waits for an
	// unreachable etcd by itself (up to ListTimeout), so a longer pause only
	// delays the first list after etcd is back.
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	// CheckInterval is how often a watching Reader asks the store for its
	// identity (cluster ID, revision). The client resumes a broken watch on
	// its own, silently, and a store recreated or restored from a backup
	// serves the resumed watch from the wrong place; this check is how the
	// Reader notices. Default 5s; negative disables it.
	CheckInterval time.Duration
	// ListTimeout bounds one complete list (all pages). Default 60s.
	ListTimeout time.Duration
	// PageSize is the number of keys fetched per page of a list. Default 500. A
	// page whose response exceeds the client's message limit (gRPC
	// ResourceExhausted; etcdconn sets MaxCallRecvMsgSize) is fetched again in
	// halves, down to one key, so that large values slow a list but never stop it.
	PageSize int64
	// RequireKey, if set, is a key a list must find for the store to count as
	// complete: without it (a store lost and being rebuilt, or restored before its
	// writer came back), the list delivers what it found but prunes nothing, calls
	// no OnSynced, and is tried again. Agents require the hub's ready marker, so
	// that a recreated, empty store never empties what they serve.
	RequireKey string
}

// ErrStoreNotReady: a list did not find ReaderOptions.RequireKey.
var ErrStoreNotReady = errors.New("kvstore: the store lacks its ready marker")

// ErrRefused is wrapped by a Decode error that refuses a value on purpose (one over
// its writer's size limit, say) rather than failing to parse it: the Reader counts
// it in refused_values_total, not decode_errors_total, and logs it at V(1) only,
// since the Observer reports it. Like any Decode error, the version is processed
// once: it is decoded again only by a Resync.
var ErrRefused = errors.New("kvstore: value refused")

// setDefaults fills unset optional fields; see the field docs for the values.
func (o *ReaderOptions[T]) setDefaults() {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.RetryBaseDelay <= 0 {
		o.RetryBaseDelay = 100 * time.Millisecond
	}
	if o.RetryMaxDelay <= 0 {
		o.RetryMaxDelay = 2 * time.Second
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = 5 * time.Second
	}
	o.RetryMaxDelay = max(o.RetryMaxDelay, o.RetryBaseDelay)
	if o.ListTimeout <= 0 {
		o.ListTimeout = 60 * time.Second
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
}

// DefaultPageSize is ReaderOptions.PageSize's default: with values of at most a
// member's MaxValueBytes (1 MiB by default), most pages fit the client's message
// limit, and those that do not are split.
const DefaultPageSize = 500

// Reader mirrors every key under a prefix into an Observer. Create it with
// NewReader and start it with Run.
type Reader[T any] struct {
	opts    ReaderOptions[T]
	log     logr.Logger
	started atomic.Bool

	// known is the state of every key the Reader has processed, owned by the
	// Run goroutine.
	known map[string]*keyState
	// store is the history known refers to, owned by the Run goroutine.
	store storeID
	// seed hashes values (keyState.hash).
	seed maphash.Seed
	// versions is Observer as a VersionObserver, or nil.
	versions VersionObserver
	// resync asks Run for a Resync (capacity 1: requests merge).
	resync chan struct{}
}

// keyState is what a Reader remembers of one key.
type keyState struct {
	// modRev is the ModRevision of the latest version of the key that was
	// processed, decoded or not: the guard against delivering a version twice.
	modRev int64
	// hash is the hash of that version's value. In another history (a store
	// restored from a backup) a ModRevision can come back with another
	// value; the hash tells them apart.
	hash uint64
	// delivered says the Observer holds a (good) value for the key, so its
	// deletion must be delivered.
	delivered bool
}

// NewReader checks opts and returns a Reader that is not yet running.
func NewReader[T any](opts ReaderOptions[T]) (*Reader[T], error) {
	switch {
	case opts.Client == nil:
		return nil, errors.New("kvstore: ReaderOptions.Client is required")
	case opts.Prefix == "":
		return nil, errors.New("kvstore: ReaderOptions.Prefix is required")
	case opts.Decode == nil:
		return nil, errors.New("kvstore: ReaderOptions.Decode is required")
	case opts.Observer == nil:
		return nil, errors.New("kvstore: ReaderOptions.Observer is required")
	}
	opts.setDefaults()
	r := &Reader[T]{opts: opts, known: map[string]*keyState{}, seed: maphash.MakeSeed(), resync: make(chan struct{}, 1)}
	r.versions, _ = opts.Observer.(VersionObserver)
	return r, nil
}

// Resync asks the Reader to forget what it delivered and list the prefix
// again, delivering every key (not only those whose version changed) and
// pruning, through VersionObserver.OnResync, whatever the Observer holds that
// the list does not deliver. It is the way back for an Observer found to
// differ from the store (a digest mismatch): a plain re-list would skip every
// version the Reader believes delivered. It returns at once; Run does the work.
// Safe from any goroutine; requests made while one is pending merge into it.
func (r *Reader[T]) Resync() {
	select {
	case r.resync <- struct{}{}:
	default:
	}
}

// Run lists and watches the prefix until ctx is done, then returns nil. It
// returns an error only if called twice.
func (r *Reader[T]) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return fmt.Errorf("kvstore: reader of %q: Run called twice", r.opts.Prefix)
	}
	r.log = r.opts.Logger
	if r.log.GetSink() == nil {
		r.log = logr.FromContextOrDiscard(ctx)
	}
	r.log = r.log.WithValues("prefix", r.opts.Prefix)

	bo := newBackoff(r.opts.RetryBaseDelay, r.opts.RetryMaxDelay)
	reason := "" // why the last list or watch ended; empty for the first list
	for {
		if reason != "" {
			relistsTotal.WithLabelValues(r.opts.Prefix, reason).Inc()
		}
		if reason == reasonResync {
			// Without its dedupe state the Reader delivers every listed key,
			// and cannot prune what it no longer knows: the Observer does.
			r.log.Info("Resyncing: delivering every key again")
			r.known = map[string]*keyState{}
			if r.versions != nil {
				r.versions.OnResync()
			}
		}
		rev, changed, err := r.list(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if changed != "" && !storeChanged(reason) {
			// Found by the list itself (the watch had not noticed): counted
			// as a re-list of its own, for the store change it is.
			relistsTotal.WithLabelValues(r.opts.Prefix, changed).Inc()
		}
		if errors.Is(err, ErrStoreNotReady) {
			r.log.Info("The store lacks its ready marker: keeping what is held, listing again", "key", r.opts.RequireKey)
		} else if err != nil {
			r.log.Error(err, "List failed, will retry")
		}
		if err != nil {
			reason = reasonListError
			if !sleep(ctx, r.opts.Clock, bo.Step()) {
				return nil
			}
			continue
		}
		r.log.V(1).Info("Listed prefix", "revision", rev, "keys", len(r.known), "clusterID", fmt.Sprintf("%x", r.store.clusterID))
		r.opts.Observer.OnSynced()
		if r.versions != nil {
			r.versions.OnRevision(rev)
		}

		var healthy bool
		reason, healthy = r.watch(ctx, rev)
		if ctx.Err() != nil {
			return nil
		}
		if healthy {
			bo = newBackoff(r.opts.RetryBaseDelay, r.opts.RetryMaxDelay)
		}
		r.log.Info("Watch ended, re-listing", "reason", reason, "fromRevision", rev)
		// Even a watch that fails at once must not turn into a tight
		// list/watch loop, so every re-list waits at least RetryBaseDelay.
		if !sleep(ctx, r.opts.Clock, bo.Step()) {
			return nil
		}
	}
}

// list delivers the prefix's state at one revision and prunes what it lacks.
// It returns that revision, to watch from, and, if the list showed the store
// to be another history than the one the Reader knew, why (a relist reason).
func (r *Reader[T]) list(ctx context.Context) (rev int64, changed string, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.ListTimeout)
	defer cancel()

	// Every known key is stale until this list sees it. Pages are read at the
	// revision of the first page, so together they form one consistent
	// snapshot; pruning waits until the last page, because a key missing from
	// a partial list may still exist.
	seen := make(map[string]struct{}, len(r.known))
	from, end := r.opts.Prefix, clientv3.GetPrefixRangeEnd(r.opts.Prefix)
	page := r.opts.PageSize
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(page)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := r.opts.Client.Get(ctx, from, opts...)
		if status.Code(err) == codes.ResourceExhausted && page > 1 {
			// The page's values exceed the message limit: fetch it in halves.
			page = max(page/2, 1)
			pageSplitsTotal.WithLabelValues(r.opts.Prefix).Inc()
			r.log.V(1).Info("List page too large for one message, halving it", "from", from, "pageSize", page)
			continue
		}
		if err != nil {
			return 0, changed, fmt.Errorf("list %q at revision %d: %w", r.opts.Prefix, rev, err)
		}
		page = min(page*2, r.opts.PageSize) // back up after a split
		if rev == 0 {
			rev = resp.Header.Revision
			// A list at a revision older than one already seen, or from
			// another cluster, is the first sign of a store that was
			// recreated or restored (the watch may have gone on waiting for
			// revisions that the new history reaches much later).
			if why := r.observe(resp.Header); why != "" {
				changed = why
			}
		}
		for _, kv := range resp.Kvs {
			seen[string(kv.Key)] = struct{}{}
			if r.upsert(string(kv.Key), kv.Value, kv.ModRevision) && changed == "" {
				changed = reasonHistoryDiffers
				r.log.Info("A key's history differs from the one seen before: the store was replaced or restored", "key", string(kv.Key), "modRevision", kv.ModRevision)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	if r.opts.RequireKey != "" {
		if _, ok := seen[r.opts.RequireKey]; !ok {
			return 0, changed, fmt.Errorf("list %q at revision %d: %w", r.opts.Prefix, rev, ErrStoreNotReady)
		}
	}
	for key := range r.known {
		if _, ok := seen[key]; !ok {
			r.delete(key, 0)
		}
	}
	if changed != "" {
		// Every key now holds what the new history holds (upsert compares
		// values, not only revisions, for a key whose revision did not
		// grow), and the watch starts from this list: nothing of the old
		// history is left to swallow the new one's events.
		r.store = storeID{clusterID: r.store.clusterID, rev: rev}
	}
	return rev, changed, nil
}

// observe checks a response header against the history the Reader knows; see
// storeID.observe. It logs a change.
func (r *Reader[T]) observe(hdr *etcdserverpb.ResponseHeader) string {
	before := r.store
	why := r.store.observe(hdr)
	if why != "" {
		r.log.Info("The store is not the one read before, re-listing from scratch", "reason", why,
			"clusterID", fmt.Sprintf("%x", before.clusterID), "revision", before.rev,
			"newClusterID", fmt.Sprintf("%x", r.store.clusterID), "newRevision", r.store.rev)
	}
	return why
}

// watch applies changes after rev until the watch ends or ctx is done. It
// returns why the watch ended and whether it was healthy long enough to reset
// the retry backoff.
func (r *Reader[T]) watch(ctx context.Context, rev int64) (reason string, healthy bool) {
	// WithRequireLeader makes a member that lost its leader end the watch
	// (ErrNoLeader) instead of silently serving a partitioned view.
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	start := r.opts.Clock.Now()
	defer func() {
		healthy = healthy || r.opts.Clock.Since(start) >= r.opts.RetryMaxDelay
	}()

	// WithFragment: etcd splits a response whose events exceed its request limit
	// into messages the client joins again, so that no message exceeds the
	// client's limit however many large values one batch holds.
	wch := r.opts.Client.Watch(ctx, r.opts.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithFragment())
	var tick <-chan time.Time
	if r.opts.CheckInterval > 0 {
		t := r.opts.Clock.NewTicker(r.opts.CheckInterval)
		defer t.Stop()
		tick = t.C()
	}
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case resp, ok = <-wch:
		case <-tick:
			if why := r.check(ctx); why != "" {
				return why, healthy
			}
			continue
		case <-r.resync:
			return reasonResync, true
		}
		if !ok {
			break
		}
		if why := r.observe(&resp.Header); why != "" {
			return why, healthy
		}
		if resp.CompactRevision != 0 {
			r.log.Info("Watch position compacted", "compactRevision", resp.CompactRevision)
			return reasonCompacted, healthy
		}
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				r.log.Info("Watch failed", "error", err.Error())
			}
			return reasonWatchError, healthy
		}
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			switch ev.Type {
			case mvccpb.PUT:
				if r.upsert(key, ev.Kv.Value, ev.Kv.ModRevision) {
					// Delivered, but a watch from this history cannot be
					// trusted to hold what came before: list it whole.
					r.log.Info("A key's history differs from the one seen before: the store was replaced or restored", "key", key, "modRevision", ev.Kv.ModRevision)
					return reasonHistoryDiffers, healthy
				}
			case mvccpb.DELETE:
				r.delete(key, ev.Kv.ModRevision)
			}
		}
		if len(resp.Events) > 0 {
			healthy = true
			if r.versions != nil {
				r.versions.OnRevision(resp.Events[len(resp.Events)-1].Kv.ModRevision)
			}
		} else if resp.IsProgressNotify() && r.versions != nil {
			r.versions.OnRevision(resp.Header.Revision)
		}
	}
	return reasonWatchClosed, healthy
}

// check asks the store for its identity (the cheapest read: one key, the
// prefix itself) and returns why it is not the history being watched, or "".
// A failed check says nothing: the watch is left to the client to resume, and
// the next check tries again.
func (r *Reader[T]) check(ctx context.Context) string {
	timeout := min(r.opts.CheckInterval, r.opts.ListTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := r.opts.Client.Get(ctx, r.opts.Prefix, clientv3.WithKeysOnly())
	if err != nil {
		if ctx.Err() == nil {
			r.log.V(1).Info("Store check failed, will retry", "error", err.Error())
		}
		return ""
	}
	return r.observe(resp.Header)
}

// upsert processes one version of a key, at most once per (key, modRev) in
// one history. It reports whether that version contradicts the one seen
// before (an older ModRevision, or the same with another value): then the
// store is another history, and the version is delivered all the same.
func (r *Reader[T]) upsert(key string, value []byte, modRev int64) (differs bool) {
	h := maphash.Bytes(r.seed, value)
	st := r.known[key]
	if st != nil {
		switch {
		case st.modRev == modRev && st.hash == h:
			return false // this version was already processed
		case st.modRev > modRev || st.modRev == modRev:
			differs = true
		}
	}
	if st == nil {
		st = &keyState{}
		r.known[key] = st
	}
	st.modRev, st.hash = modRev, h

	v, err := r.opts.Decode(key, value)
	if errors.Is(err, ErrRefused) {
		refusedValuesTotal.WithLabelValues(r.opts.Prefix).Inc()
		r.log.V(1).Info("Value refused, keeping the last good one if the observer does", "key", key, "modRevision", modRev, "reason", err.Error())
	} else if err != nil {
		// Keep whatever good value the Observer has: a bad write must not take
		// a service away. modRev is recorded, so this version is logged and
		// counted once.
		decodeErrorsTotal.WithLabelValues(r.opts.Prefix).Inc()
		r.log.Error(err, "Skipping malformed value, keeping the last good one", "key", key, "modRevision", modRev, "hasGoodValue", st.delivered)
	} else {
		st.delivered = true
		r.opts.Observer.OnUpsert(key, v)
	}
	if r.versions != nil {
		r.versions.OnVersion(key, modRev)
	}
	return differs
}

// delete forgets key and tells the Observer if it held a value for it. modRev
// is the deletion's revision, or 0 for a prune after a list.
func (r *Reader[T]) delete(key string, modRev int64) {
	st := r.known[key]
	if st == nil || (modRev != 0 && st.modRev >= modRev) {
		return
	}
	delete(r.known, key)
	if st.delivered {
		r.opts.Observer.OnDelete(key)
	}
	if r.versions != nil {
		r.versions.OnVersion(key, 0)
	}
}
