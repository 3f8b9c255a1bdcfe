//go:build meshfedtesthooks

package view

import (
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// DropForTest removes key's record from what the View serves, as a bug in applying
// an event would, without the Reader or the View's versions knowing: the fault that
// desync detection must find and a Resync heal. It exists only in binaries built with
// the meshfedtesthooks tag. It reports whether the View held the key.
func (v *View) DropForTest(key string) bool {
	k, err := keyspace.Parse(key)
	if err != nil {
		return false
	}
	v.mu.Lock()
	found := false
	v.eachRecord(func(have string, _ model.Record) { found = found || have == key })
	if !found {
		v.mu.Unlock()
		return false
	}
	v.apply(k, nil, false)
	return true
}
