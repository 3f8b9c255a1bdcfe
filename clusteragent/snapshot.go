package clusteragent

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// The agent keeps a snapshot of its last live view of the hub's etcd in its own member
// cluster, so that a replica that starts while the hub is down serves at once.
//
// Layout, in the agent's namespace: ConfigMaps <SnapshotConfigMap>-<set>-<i> hold the
// gzipped JSON of every record but heartbeats (store key → value, as in etcd) in chunks of at most
// snapshotChunkBytes, and the ConfigMap SnapshotConfigMap holds the header: which set
// (a or b, alternating), how many chunks, their SHA-256, the time and key count. A
// save writes the other set's chunks first and the header last, so a reader sees the
// old snapshot or the new one, never a mix; a torn read fails the digest and is not
// restored. Only the leader saves, only a live view, at most every snapshotInterval
// and only when something but a heartbeat changed (heartbeats are not saved). Every
// replica restores at start.

const (
	// SnapshotConfigMap is the header of the agent's view snapshot.
	SnapshotConfigMap  = "meshfed-view"
	snapshotChunkBytes = 900 << 10 // under the API server's 1 MiB object limit
	snapshotInterval   = 10 * time.Second
	snapshotFormat     = "1"
	restoreTimeout     = 30 * time.Second
)

// Header keys.
const (
	snapKeyFormat  = "format"
	snapKeySet     = "set"
	snapKeyChunks  = "chunks"
	snapKeyDigest  = "sha256"
	snapKeySavedAt = "savedAt"
	snapKeyKeys    = "keys"
	snapChunkData  = "view.json.gz"
)

var (
	snapshotSaves = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "agent", Name: "view_snapshot_saves_total",
		Help: "Snapshots of the agent's view saved in its member cluster, by result (saved, failed).",
	}, []string{"result"})
	snapshotBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "agent", Name: "view_snapshot_bytes",
		Help: "Compressed size of the last view snapshot saved or restored.",
	})
	viewRestored = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "agent", Name: "view_restored",
		Help: "1 while the agent serves a view restored from its snapshot, before the hub answered; 0 once it is live.",
	})
)

// encodeSnapshot is the compressed JSON of records, deterministic for equal records.
func encodeSnapshot(records map[string]model.Record) ([]byte, error) {
	// One JSON object of the records by key, keys sorted, written record by record
	// into the compressor: the view's worth of JSON is never held at once.
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Write([]byte{'{'}) //nolint:errcheck // a bytes.Buffer does not fail
	for i, key := range slices.Sorted(maps.Keys(records)) {
		v, err := model.Encode(records[key])
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", key, err)
		}
		k, err := json.Marshal(key)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			zw.Write([]byte{','}) //nolint:errcheck
		}
		zw.Write(k)           //nolint:errcheck
		zw.Write([]byte{':'}) //nolint:errcheck
		zw.Write(v)           //nolint:errcheck
	}
	zw.Write([]byte{'}'}) //nolint:errcheck
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeSnapshot parses what encodeSnapshot wrote. A record that does not decode or
// validate is dropped and counted in bad, as a reader of the store would skip it.
func decodeSnapshot(data []byte) (records map[string]model.Record, bad int, err error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, 0, err
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 1<<30))
	if err != nil {
		return nil, 0, err
	}
	values := map[string]json.RawMessage{}
	if err := json.Unmarshal(raw, &values); err != nil {
		return nil, 0, err
	}
	records = make(map[string]model.Record, len(values))
	for key, v := range values {
		rec, err := model.Decode(key, v)
		if err != nil {
			bad++
			continue
		}
		records[key] = rec
	}
	return records, bad, nil
}

func chunkName(set string, i int) string {
	return SnapshotConfigMap + "-" + set + "-" + strconv.Itoa(i)
}

// saveSnapshots saves the View's live content every snapshotInterval when it changed,
// until ctx is done.
func saveSnapshots(ctx context.Context, kube kubernetes.Interface, namespace string, v *view.View, log logr.Logger) error {
	if err := v.WaitLive(ctx); err != nil {
		return nil
	}
	// Heartbeats change every few seconds and say nothing a restart could use (a
	// restored heartbeat counts as never seen): they are left out, and do not make
	// the view count as changed, so a fleet at rest costs no encoding and no write.
	var dirty atomic.Bool
	dirty.Store(true)
	defer v.Subscribe(func(k keyspace.Key) {
		if k.Kind != keyspace.KindClusterHeartbeat {
			dirty.Store(true)
		}
	})()
	ticker := time.NewTicker(snapshotInterval)
	defer ticker.Stop()
	for {
		if dirty.Swap(false) {
			records := snapshotRecords(v)
			data, err := encodeSnapshot(records)
			if err == nil {
				err = saveSnapshot(ctx, kube, namespace, data, snapshotChunkBytes, len(records), time.Now())
			}
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				snapshotSaves.WithLabelValues("saved").Inc()
				snapshotBytes.Set(float64(len(data)))
				log.V(1).Info("Saved the view's snapshot", "bytes", len(data))
			} else {
				dirty.Store(true) // try again at the next tick
				snapshotSaves.WithLabelValues("failed").Inc()
				log.Error(err, "Saving the view's snapshot failed; will retry")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// snapshotRecords is what a snapshot holds: the view's records but its heartbeats.
func snapshotRecords(v *view.View) map[string]model.Record {
	records := v.Records()
	for key := range records {
		if k, err := keyspace.Parse(key); err == nil && k.Kind == keyspace.KindClusterHeartbeat {
			delete(records, key)
		}
	}
	return records
}

// saveSnapshot writes data as the next set of chunks of chunkBytes, then the header.
func saveSnapshot(ctx context.Context, kube kubernetes.Interface, namespace string, data []byte, chunkBytes, keys int, now time.Time) error {
	cms := kube.CoreV1().ConfigMaps(namespace)
	header, err := cms.Get(ctx, SnapshotConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		header, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("read snapshot header: %w", err)
	}
	set := "a"
	if header != nil && header.Data[snapKeySet] == "a" {
		set = "b"
	}
	var chunks int
	for off := 0; off < len(data) || chunks == 0; off += chunkBytes {
		end := min(off+chunkBytes, len(data))
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: chunkName(set, chunks), Namespace: namespace,
			Labels: map[string]string{"app.kubernetes.io/part-of": "meshfed", "app.kubernetes.io/component": "view-snapshot"}},
			BinaryData: map[string][]byte{snapChunkData: data[off:end]}}
		if err := apply(ctx, kube, cm); err != nil {
			return fmt.Errorf("write snapshot chunk %s: %w", cm.Name, err)
		}
		chunks++
	}
	sum := sha256.Sum256(data)
	next := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: SnapshotConfigMap, Namespace: namespace,
		Labels: map[string]string{"app.kubernetes.io/part-of": "meshfed", "app.kubernetes.io/component": "view-snapshot"}},
		Data: map[string]string{snapKeyFormat: snapshotFormat, snapKeySet: set, snapKeyChunks: strconv.Itoa(chunks),
			snapKeyDigest: hex.EncodeToString(sum[:]), snapKeySavedAt: now.UTC().Format(time.RFC3339Nano),
			snapKeyKeys: strconv.Itoa(keys)}}
	if err := apply(ctx, kube, next); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	// The other set holds the previous snapshot; the next save overwrites it. Chunks of
	// this set beyond what it now uses, from an earlier, larger save, would linger:
	// remove them (they are contiguous, so the first missing one ends the run).
	for i := chunks; ; i++ {
		err := cms.Delete(ctx, chunkName(set, i), metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if err != nil {
			return fmt.Errorf("delete stale snapshot chunk: %w", err)
		}
	}
	return nil
}

// apply creates or replaces a ConfigMap.
func apply(ctx context.Context, kube kubernetes.Interface, cm *corev1.ConfigMap) error {
	cms := kube.CoreV1().ConfigMaps(cm.Namespace)
	cur, err := cms.Get(ctx, cm.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	cm.ResourceVersion = cur.ResourceVersion
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// errNoSnapshot: nothing was ever saved.
var errNoSnapshot = errors.New("no view snapshot")

// loadSnapshot reads the current snapshot.
func loadSnapshot(ctx context.Context, kube kubernetes.Interface, namespace string) (view.Restored, map[string]model.Record, int, error) {
	cms := kube.CoreV1().ConfigMaps(namespace)
	header, err := cms.Get(ctx, SnapshotConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return view.Restored{}, nil, 0, errNoSnapshot
	}
	if err != nil {
		return view.Restored{}, nil, 0, err
	}
	if f := header.Data[snapKeyFormat]; f != snapshotFormat {
		return view.Restored{}, nil, 0, fmt.Errorf("snapshot format %q, this agent reads %q", f, snapshotFormat)
	}
	chunks, err := strconv.Atoi(header.Data[snapKeyChunks])
	if err != nil || chunks < 1 {
		return view.Restored{}, nil, 0, fmt.Errorf("snapshot header: chunks %q", header.Data[snapKeyChunks])
	}
	var data []byte
	for i := range chunks {
		cm, err := cms.Get(ctx, chunkName(header.Data[snapKeySet], i), metav1.GetOptions{})
		if err != nil {
			return view.Restored{}, nil, 0, fmt.Errorf("snapshot chunk %d: %w", i, err)
		}
		data = append(data, cm.BinaryData[snapChunkData]...)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != header.Data[snapKeyDigest] {
		return view.Restored{}, nil, 0, errors.New("snapshot chunks do not match the header's digest (a save was under way)")
	}
	records, bad, err := decodeSnapshot(data)
	if err != nil {
		return view.Restored{}, nil, 0, fmt.Errorf("decode snapshot: %w", err)
	}
	savedAt, _ := time.Parse(time.RFC3339Nano, header.Data[snapKeySavedAt])
	snapshotBytes.Set(float64(len(data)))
	return view.Restored{SavedAt: savedAt}, records, bad, nil
}

// restoreSnapshot loads the snapshot into v, unless the hub answered first.
// It returns at once; the restored gauge drops once the View is live or ctx ends.
func restoreSnapshot(ctx context.Context, kube kubernetes.Interface, namespace string, v *view.View, log logr.Logger) {
	lctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	info, records, bad, err := loadSnapshot(lctx, kube, namespace)
	switch {
	case errors.Is(err, errNoSnapshot):
		log.Info("No view snapshot to restore: serving once the hub answers")
		return
	case err != nil:
		log.Error(err, "View snapshot not restored: serving once the hub answers")
		return
	}
	if bad > 0 {
		log.Info("View snapshot held records that do not decode; they were dropped", "dropped", bad)
	}
	if !v.Restore(info, records) {
		log.V(1).Info("The hub answered before the snapshot was read: not restored")
		return
	}
	viewRestored.Set(1)
	log.Info("Serving the view restored from its snapshot until the hub answers", "savedAt", info.SavedAt, "keys", len(records))
	go func() {
		v.WaitLive(ctx) //nolint:errcheck // either way the restored view is no longer served
		viewRestored.Set(0)
	}()
}

// registerAgentMetrics registers the collectors of this package.
func registerAgentMetrics(reg prometheus.Registerer) {
	reg.MustRegister(hubReachable, snapshotSaves, snapshotBytes, viewRestored, programmedWrites)
}
