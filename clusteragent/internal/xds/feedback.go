package xds

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Feedback: which policy generations the proxies took. Every served resource a
// policy shaped is tagged with the policy's ref (kind, namespace, name, generation);
// the ADS streams' ACKs and NACKs then say, per ref, whether the proxies that
// subscribe to its resources took it (Programmed), refused it (Refused, with the
// NACK's message and the node), or have not answered yet (Pending). Refs no stream
// subscribes to are not reported.
//
// Tagging: tagPolicies runs at the end of every rebuild and tags, from the view,
//   - a global service port's client Listener, RouteConfiguration (both
//     ListenerName) and Cluster (ClusterName) with its TrafficPolicy, and
//   - the server Listener (ServerListenerName) of every address of this cluster that
//     serves a global service with the AuthorizationPolicies that apply to it.
//
// Code that adds a resource a policy shapes adds its tag with one call in
// tagPolicies, e.g. tags.tag(resourcev3.ClusterType, subsetCluster, tp.Ref()). Only
// listeners, route configurations and clusters (the types every group shares) can be
// tagged; a tag of a name not served is ignored, so tagging "if any" is fine.

// policyTags are the refs of the policies that shaped each served resource.
type policyTags map[typedName][]model.PolicyRef

// tag records that refs shaped the resource of type typ named name.
func (t policyTags) tag(typ, name string, refs ...model.PolicyRef) {
	if len(refs) == 0 {
		return
	}
	k := typedName{typ, name}
	for _, r := range refs {
		if !slices.Contains(t[k], r) {
			t[k] = append(t[k], r)
		}
	}
}

// tagPolicies tags the resources of served (the targets of this rebuild) and servers
// (this cluster's server addresses) with the policies that shaped them.
func (s *Server) tagPolicies(served []Target, servers []serverAddr) policyTags {
	v := s.opts.View
	tags := policyTags{}
	for _, t := range served {
		tp := v.TrafficPolicy(t.Namespace, t.Name)
		if tp == nil {
			continue
		}
		name := ListenerName(t.Hostname, t.Port)
		tags.tag(resourcev3.ListenerType, name, tp.Ref())
		tags.tag(resourcev3.RouteType, name, tp.Ref())
		tags.tag(resourcev3.ClusterType, ClusterName(t.Hostname, t.Port), tp.Ref())
		for _, sub := range splitSubsets(tp) {
			tags.tag(resourcev3.ClusterType, SubsetClusterName(t.Hostname, t.Port, sub), tp.Ref())
		}
	}

	// Server listeners: the AuthorizationPolicies of the global services each of this
	// cluster's Services serves, on the addresses of its endpoints.
	if len(servers) == 0 || len(v.AllAuthorizationPolicies()) == 0 {
		return tags
	}
	self, ok := v.Cluster(s.opts.Cluster)
	if !ok {
		return tags
	}
	for _, rec := range self.Services {
		var refs []model.PolicyRef
		for _, e := range s.perGlobal {
			g := &e.global
			if !model.Selects(g, s.opts.Cluster, rec.Namespace, rec.Name, rec.Labels) {
				continue
			}
			for _, p := range v.AuthorizationPolicies(g.Namespace, g.Name) {
				refs = append(refs, p.Ref())
			}
		}
		if len(refs) == 0 {
			continue
		}
		for _, ep := range rec.Endpoints {
			for _, p := range ep.Ports {
				tags.tag(resourcev3.ListenerType, ServerListenerName(ep.Address, uint32(p.Port)), refs...)
				// The rules themselves travel in the address's route configuration.
				tags.tag(resourcev3.RouteType, InboundRouteName(ep.Address, uint32(p.Port)), refs...)
			}
		}
	}
	return tags
}

// feedback follows what every stream ACKed and NACKed, and judges the tagged refs by
// it. It has its own lock: the stream callbacks and Run's loop write it, the agent's
// reporter reads it.
type feedback struct {
	mu      sync.Mutex
	tags    map[typedName]tagged
	streams map[int64]*streamFeedback
	changed chan struct{} // buffered 1: a ref's state may have changed
}

// tagged are the refs of one served resource and the version of it that first
// carried them: a stream that ACKed this version or a newer one has them.
type tagged struct {
	refs    []model.PolicyRef
	version uint64
}

// streamFeedback is one stream's node and, per type, its subscription and answers.
type streamFeedback struct {
	node  string
	types map[string]*typeFeedback
}

type typeFeedback struct {
	names    map[string]bool
	wildcard bool
	acked    uint64            // the last version ACKed
	sent     map[string]uint64 // versions of the responses sent, by nonce (the last few)
	nack     *nack             // the last NACK not followed by an ACK of a newer version
}

// nack is a refused response: its version, the resources its message names (nil:
// it names none the stream subscribes to, so all of them count as refused), and the
// message.
type nack struct {
	version uint64
	names   map[string]bool
	message string
}

// maxSentNonces bounds a stream's record of the responses it was sent, per type: a
// NACK answers one of the last ones.
const maxSentNonces = 8

func newFeedback() *feedback {
	return &feedback{tags: map[typedName]tagged{}, streams: map[int64]*streamFeedback{}, changed: make(chan struct{}, 1)}
}

func (f *feedback) notify() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// setTags replaces the tags with tags, each resolved to the version of the resource
// sh serves under its name; a resource whose refs did not change keeps the version
// that first carried them. Tags of names sh does not serve are dropped.
func (f *feedback) setTags(tags policyTags, sh *sharedResources) {
	next := make(map[typedName]tagged, len(tags))
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, refs := range tags {
		r, ok := sh.get(k.typ, k.name)
		if !ok {
			continue
		}
		slices.SortFunc(refs, model.ComparePolicyRefs)
		t := tagged{refs: refs, version: r.version}
		if prev, ok := f.tags[k]; ok && slices.Equal(prev.refs, refs) && prev.version <= r.version {
			t.version = prev.version
		}
		next[k] = t
	}
	if !maps.EqualFunc(f.tags, next, func(a, b tagged) bool { return a.version == b.version && slices.Equal(a.refs, b.refs) }) {
		f.tags = next
		f.notify()
	}
}

// get is the resource of type typ named name that sh serves.
func (sh *sharedResources) get(typ, name string) (*resource, bool) {
	if sh == nil {
		return nil, false
	}
	var rs *resources
	switch typ {
	case resourcev3.ListenerType:
		rs = sh.listeners
	case resourcev3.RouteType:
		rs = sh.routes
	case resourcev3.ClusterType:
		rs = sh.clusters
	}
	if rs == nil {
		return nil, false
	}
	return rs.get(name)
}

// request records a stream's request: its subscription, and an ACK or a NACK.
func (f *feedback) request(id int64, req *discoverygrpc.DiscoveryRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.streams[id]
	if st == nil {
		st = &streamFeedback{types: map[string]*typeFeedback{}}
		f.streams[id] = st
	}
	n := req.GetNode()
	st.node = model.Truncate(n.GetId()+" ("+n.GetLocality().GetRegion()+"/"+n.GetLocality().GetZone()+")", 256)
	typ := req.GetTypeUrl()
	tf := st.types[typ]
	if tf == nil {
		tf = &typeFeedback{sent: map[string]uint64{}}
		st.types[typ] = tf
	}
	tf.names = make(map[string]bool, len(req.GetResourceNames()))
	for _, name := range req.GetResourceNames() {
		tf.names[name] = true
	}
	tf.wildcard = tf.names["*"] || (len(tf.names) == 0 && (typ == resourcev3.ListenerType || typ == resourcev3.ClusterType))
	switch {
	case req.GetErrorDetail() != nil:
		v, ok := tf.sent[req.GetResponseNonce()]
		if !ok {
			return // a NACK of a response this record forgot: the next one will say
		}
		nk := &nack{version: v, message: model.Truncate(req.GetErrorDetail().GetMessage(), model.MaxProgrammedMessage)}
		// grpc-go names each refused resource: `resource "<name>": <error>`.
		for name := range f.taggedNames(typ) {
			if strings.Contains(req.GetErrorDetail().GetMessage(), strconv.Quote(name)) {
				if nk.names == nil {
					nk.names = map[string]bool{}
				}
				nk.names[name] = true
			}
		}
		tf.nack = nk
	case req.GetResponseNonce() != "":
		v, err := strconv.ParseUint(req.GetVersionInfo(), 10, 64)
		if err != nil {
			return
		}
		tf.acked = v
		if tf.nack != nil && v >= tf.nack.version {
			tf.nack = nil
		}
	}
	f.notify()
}

// taggedNames are the tagged resources of type typ. f.mu is held.
func (f *feedback) taggedNames(typ string) map[string]bool {
	out := map[string]bool{}
	for k := range f.tags {
		if k.typ == typ {
			out[k.name] = true
		}
	}
	return out
}

// response records the version a response sent to stream id carries.
func (f *feedback) response(id int64, resp *discoverygrpc.DiscoveryResponse) {
	v, err := strconv.ParseUint(resp.GetVersionInfo(), 10, 64)
	if err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.streams[id]
	if st == nil {
		return
	}
	tf := st.types[resp.GetTypeUrl()]
	if tf == nil {
		return
	}
	if len(tf.sent) >= maxSentNonces {
		clear(tf.sent)
	}
	tf.sent[resp.GetNonce()] = v
}

// closed forgets stream id.
func (f *feedback) closed(id int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.streams[id]; ok {
		delete(f.streams, id)
		f.notify()
	}
}

// judge is every tagged ref some stream subscribes to, with its state, sorted by ref.
// A ref is Refused if a stream refused a version of one of its resources at least as
// new as the one that carried it (and has ACKed nothing newer since), Programmed if
// every subscribing stream ACKed such a version, else Pending. The refusal reported
// is that of the first node by name.
func (f *feedback) judge() []model.PolicyProgrammed {
	f.mu.Lock()
	defer f.mu.Unlock()
	byRef := map[model.PolicyRef]*model.PolicyProgrammed{}
	judgeOne := func(st *streamFeedback, tf *typeFeedback, name string, t tagged) {
		state, msg := model.StatePending, ""
		switch {
		case tf.nack != nil && tf.nack.version >= t.version && (tf.nack.names == nil || tf.nack.names[name]):
			state, msg = model.StateRefused, tf.nack.message
		case tf.acked >= t.version:
			state = model.StateProgrammed
		}
		for _, ref := range t.refs {
			p := byRef[ref]
			if p == nil {
				p = &model.PolicyProgrammed{Ref: ref, State: model.StateProgrammed}
				byRef[ref] = p
			}
			switch {
			case state == model.StateRefused && (p.State != model.StateRefused || st.node < p.Node):
				p.State, p.Message, p.Node = state, msg, st.node
			case state == model.StatePending && p.State == model.StateProgrammed:
				p.State = state
			}
		}
	}
	// Per stream, the tagged resources it subscribes to: proportional to the
	// subscriptions (a proxyless client subscribes to a few names), not to tags ×
	// streams.
	for _, st := range f.streams {
		for typ, tf := range st.types {
			if tf.wildcard {
				for k, t := range f.tags {
					if k.typ == typ {
						judgeOne(st, tf, k.name, t)
					}
				}
				continue
			}
			for name := range tf.names {
				if t, ok := f.tags[typedName{typ, name}]; ok {
					judgeOne(st, tf, name, t)
				}
			}
		}
	}
	out := make([]model.PolicyProgrammed, 0, len(byRef))
	counts := map[string]int{}
	for _, p := range byRef {
		out = append(out, *p)
		counts[p.State]++
	}
	slices.SortFunc(out, func(a, b model.PolicyProgrammed) int { return model.ComparePolicyRefs(a.Ref, b.Ref) })
	for _, state := range []string{model.StateProgrammed, model.StateRefused, model.StatePending} {
		policiesGauge.WithLabelValues(state).Set(float64(counts[state]))
	}
	return out
}

// Programmed is, for every policy generation whose resources some connected proxy
// subscribes to, whether the proxies took it (see the package doc): what the agent
// reports to the hub (keyspace.ClusterProgrammed). Sorted by ref.
func (s *Server) Programmed() []model.PolicyProgrammed { return s.fb.judge() }

// ProgrammedChanged receives when what Programmed returns may have changed: a tag, an
// ACK, a NACK or a stream closing. It never blocks a sender, so a receiver may see
// one signal for several changes.
func (s *Server) ProgrammedChanged() <-chan struct{} { return s.fb.changed }
