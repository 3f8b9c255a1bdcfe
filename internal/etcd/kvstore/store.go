package kvstore

import "go.etcd.io/etcd/api/v3/etcdserverpb"

// storeID identifies one etcd history: the cluster that answered and the
// highest revision seen from it. Within one history, revisions only grow; a
// new cluster (disk lost, a new external etcd) has another ID, and a cluster
// restored from a backup goes back to the backup's revision.
type storeID struct {
	clusterID uint64
	rev       int64
}

// observe folds hdr into s. It returns why hdr cannot come from the history s
// describes ("" if it can), and makes s describe hdr's history in that case.
// A zero header (a response made up by the client) says nothing, and neither
// does a zero revision (a watch cancelled by compaction carries one).
func (s *storeID) observe(hdr *etcdserverpb.ResponseHeader) string {
	if hdr == nil || hdr.ClusterId == 0 {
		return ""
	}
	var why string
	switch {
	case s.clusterID != 0 && hdr.ClusterId != s.clusterID:
		why = reasonClusterChanged
	case hdr.Revision != 0 && hdr.Revision < s.rev:
		why = reasonRevisionBackwards
	}
	if why != "" {
		*s = storeID{clusterID: hdr.ClusterId, rev: hdr.Revision}
		return why
	}
	s.clusterID = hdr.ClusterId
	s.rev = max(s.rev, hdr.Revision)
	return ""
}
