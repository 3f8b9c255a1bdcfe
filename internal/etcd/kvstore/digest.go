package kvstore

import (
	"context"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Digest summarizes a set of key versions, (key, ModRevision) pairs: a key
// count and the sum, modulo 2^64, of a 64-bit hash of each pair. A sum, unlike
// a hash of a sorted listing, does not depend on order and takes a version in
// or out in O(1) (Add, Remove), so an Observer keeps one as it applies events;
// two processes that hold the same versions of a prefix hold equal Digests.
// Hashing the ModRevision rather than the value lets a keys-only range read
// (DigestAt) compute the store's side without transferring any value.
//
// A Digest is a check, not a proof: different sets collide with probability
// about 2^-64, and a value changed in place without a new ModRevision (which
// etcd never does) is invisible to it.
type Digest struct {
	// Keys is the number of versions summed.
	Keys int64 `json:"keys"`
	// Sum is the sum of their hashes.
	Sum uint64 `json:"sum"`
}

// Add adds the version modRev of key.
func (d *Digest) Add(key string, modRev int64) {
	d.Keys++
	d.Sum += versionHash(key, modRev)
}

// Remove takes out a version Add added.
func (d *Digest) Remove(key string, modRev int64) {
	d.Keys--
	d.Sum -= versionHash(key, modRev)
}

// String formats d as "<keys>/<16 hex digits>", the form ParseDigest reads.
func (d Digest) String() string {
	return fmt.Sprintf("%d/%016x", d.Keys, d.Sum)
}

// ParseDigest reads Digest.String's form.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	for i := range len(s) {
		if s[i] != '/' {
			continue
		}
		keys, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || keys < 0 {
			return Digest{}, fmt.Errorf("kvstore: digest %q: bad key count", s)
		}
		if len(s)-i-1 != 16 {
			return Digest{}, fmt.Errorf("kvstore: digest %q: want 16 hex digits after '/'", s)
		}
		sum, err := strconv.ParseUint(s[i+1:], 16, 64)
		if err != nil {
			return Digest{}, fmt.Errorf("kvstore: digest %q: %w", s, err)
		}
		d.Keys, d.Sum = keys, sum
		return d, nil
	}
	return Digest{}, fmt.Errorf("kvstore: digest %q: want <keys>/<hex>", s)
}

// versionHash is FNV-1a over the key, a zero byte (no key contains one, so
// ("a", …) and ("a\x00…") cannot meet) and the revision, finished with
// SplitMix64's mixer: FNV alone changes few high bits for a change in the last
// bytes, and a sum needs every bit of every term to be well spread.
func versionHash(key string, modRev int64) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	x := uint64(offset)
	for i := range len(key) {
		x ^= uint64(key[i])
		x *= prime
	}
	x *= prime // the zero byte
	for i := range 8 {
		x ^= uint64(byte(modRev >> (8 * i)))
		x *= prime
	}
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// RangeClient is the part of the etcd client DigestAt uses.
type RangeClient interface {
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
}

// DigestAt computes the Digest of every key under prefix at revision rev, with
// keys-only range reads of pageSize keys (no value leaves etcd). A revision
// compacted away fails with rpctypes.ErrCompacted (wrapped): the store can no
// longer say what it held then.
func DigestAt(ctx context.Context, c RangeClient, prefix string, rev int64, pageSize int64) (Digest, error) {
	if pageSize <= 0 {
		pageSize = 10000
	}
	var d Digest
	from, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
	for {
		resp, err := c.Get(ctx, from, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithKeysOnly(),
			clientv3.WithLimit(pageSize))
		if err != nil {
			return Digest{}, fmt.Errorf("digest %q at revision %d: %w", prefix, rev, err)
		}
		for _, kv := range resp.Kvs {
			d.Add(string(kv.Key), kv.ModRevision)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return d, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
