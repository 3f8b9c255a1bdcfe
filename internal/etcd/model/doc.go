// Package model defines the values meshfed stores in etcd, one Go type per kind of key
// in package keyspace, and the single function that decodes them.
//
// The JSON encoding of these types is part of the versioned keyspace API
// (/meshfed/v1/...): fields may be added, never renamed or given a new meaning; a
// breaking change needs a new keyspace version. Decoders ignore unknown fields so that
// an older agent reads a newer hub's values.
//
// Decode never trusts what it reads: a value that does not parse, fails its Validate,
// or disagrees with its key (a service record whose name is not the key's name) is an
// error, and callers skip and report it (package kvstore keeps the last good value).
// Everything here is pure: no I/O, no clocks.
package model
