package view

import (
	"errors"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// A View is a kvstore.VersionObserver: besides the records, it keeps the store's
// version (ModRevision) of every key it was delivered and the revision its state
// reflects, so that what it serves can be compared with the store at that revision
// (kvstore.DigestAt). Desync detection rests on this: a View that lost or kept a key
// the store does not hold, whatever the cause (an event lost on the way, a bug in
// applying one), shows a Digest that differs from the store's.

var _ kvstore.VersionObserver = (*View)(nil)

// version is the store's version of one key as the View knows it: its ModRevision
// (0 until the Reader says) and the record the View holds for it, nil while the
// store's value never decoded.
type version struct {
	rev int64
	rec model.Record
}

// Errors of Digest.
var (
	// ErrNotLive: the View holds no complete list of the store yet (only, perhaps, a
	// restored snapshot), so it reflects no revision.
	ErrNotLive = errors.New("view: not live")
	// ErrChanging: the View is between revisions (a list or a batch of events is
	// being applied); ask again in a moment.
	ErrChanging = errors.New("view: between revisions")
)

// Digest says what the View imported from the store, as digests of (key,
// ModRevision) pairs at one revision.
type Digest struct {
	// Revision is the store revision the View's state reflects exactly.
	Revision int64
	// Served covers what the View serves: every record it holds from the store, with
	// the ModRevision of the version that record came from (0, which no stored
	// version has, for a record the View holds of its own accord), and every key
	// whose stored value never decoded, with its version. It equals the store's
	// digest at Revision exactly when the View is in sync.
	Served kvstore.Digest
	// Imported is kept incrementally from the versions the Reader delivered. It
	// differs from Served only if the View lost, kept or changed a record of its own
	// accord; from the store's, if a version was lost between the store and the View.
	Imported kvstore.Digest
}

// Digest returns the View's Digest. It fails with ErrNotLive before the first
// complete list of the store, and with ErrChanging while the View is between
// revisions. It walks every record: O(keys), under the View's read lock.
func (v *View) Digest() (Digest, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if !closed(v.live) {
		return Digest{}, ErrNotLive
	}
	if v.dirty || v.rev == 0 {
		return Digest{}, ErrChanging
	}
	d := Digest{Revision: v.rev, Imported: v.imported}
	v.eachRecord(func(key string, rec model.Record) {
		ver, ok := v.versions[key]
		if !ok || ver.rec != rec {
			d.Served.Add(key, 0)
			return
		}
		d.Served.Add(key, ver.rev)
	})
	for key, ver := range v.versions {
		if ver.rec == nil && ver.rev != 0 {
			d.Served.Add(key, ver.rev)
		}
	}
	return d, nil
}

// OnVersion implements kvstore.VersionObserver.
func (v *View) OnVersion(key string, modRev int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	// A version of a key whose value never decodes confirms it too: a Resync must
	// not prune it, or the View would never match the store again.
	delete(v.unconfirmed, key)
	ver, ok := v.versions[key]
	if ok && ver.rev != 0 {
		v.imported.Remove(key, ver.rev)
	}
	if modRev == 0 {
		delete(v.versions, key)
		if k, err := keyspace.Parse(key); err == nil {
			v.clearTooLarge(k, key)
		}
	} else {
		ver.rev = modRev
		v.versions[key] = ver
		v.imported.Add(key, modRev)
	}
	v.dirty = true
}

// OnRevision implements kvstore.VersionObserver.
func (v *View) OnRevision(rev int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rev, v.dirty = rev, false
}

// OnResync implements kvstore.VersionObserver: every key the View holds is
// unconfirmed until the Resync's list delivers it again; OnSynced drops the rest.
func (v *View) OnResync() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for key := range v.versions {
		v.unconfirmed[key] = struct{}{}
	}
	v.eachRecord(func(key string, _ model.Record) { v.unconfirmed[key] = struct{}{} })
	v.dirty = true
}

// held records the record the View now holds for key (nil: none). The caller holds
// v.mu.
func (v *View) held(key string, rec model.Record) {
	ver, ok := v.versions[key]
	if !ok && rec == nil {
		return
	}
	ver.rec = rec
	v.versions[key] = ver
	v.dirty = true
}
