package xds

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The server's cache: the resources of every group, each marshalled once, and the
// streams' watches on them.
//
// Why not go-control-plane's snapshot cache: it marshals a response's resources for
// every stream it answers, so a change fanned out to thousands of streams of one
// locality was serialized thousands of times (the agent's CPU per change grew with
// its streams), and it answers a stream whenever its type's version moved, whether or
// not a resource the stream asked for changed. Here a resource is marshalled once,
// when it is built, into an anypb.Any that every response of every stream shares
// (a stream's response is a slice of pointers to the same bytes), and a stream is
// answered only when one of the resources it subscribes to changed, was added or
// went away.

// resource is one marshalled resource at one version. It is never modified once made:
// responses share its Any.
type resource struct {
	version uint64
	vs      string // version, formatted: what streams were sent
	any     *anypb.Any
}

func newResource(version uint64, a *anypb.Any) *resource {
	return &resource{version: version, vs: versionString(version), any: a}
}

// resources are one type's resources by name, as one group is served them. A
// resources value is never modified once published; a change publishes another.
type resources struct {
	version uint64 // of the set: the highest version of a change to it
	byName  map[string]*resource
	// also holds more of the set, shared with other sets (the gateway's load
	// assignments, the same in every group's): byName's own names come first.
	also *resources
}

// get is the resource named name, if the set holds it.
func (rs *resources) get(name string) (*resource, bool) {
	if r, ok := rs.byName[name]; ok {
		return r, true
	}
	if rs.also != nil {
		return rs.also.get(name)
	}
	return nil, false
}

// all calls fn with every resource of the set.
func (rs *resources) all(fn func(name string, r *resource)) {
	for name, r := range rs.byName {
		fn(name, r)
	}
	if rs.also != nil {
		rs.also.all(func(name string, r *resource) {
			if _, own := rs.byName[name]; !own {
				fn(name, r)
			}
		})
	}
}

// marshal makes a resource of m at version. m must be valid (validate).
func marshal(m proto.Message, version uint64) (*resource, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	return newResource(version, &anypb.Any{TypeUrl: resourcev3.APITypePrefix + string(m.ProtoReflect().Descriptor().FullName()), Value: b}), nil
}

// validate checks a resource against its protoc-gen-validate rules.
func validate(m proto.Message) error {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		return v.ValidateAll()
	}
	return nil
}

// servedTypes are the resource types the server serves, in the order a proxy needs
// them.
var servedTypes = []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType}

// cache holds, per type, the resources every group shares (listeners, routes,
// clusters) or each group's own (load assignments), and answers go-control-plane's
// streams from them. It implements cachev3.Cache for state-of-the-world streams only.
type cache struct {
	mu sync.Mutex
	// shared are the listeners, routes and clusters, by type; nil until set.
	shared map[string]*resources
	// eds are the load assignments of each group, by group key.
	eds map[string]*resources
	// watches are the open watches, by group key.
	watches map[string]*watchSet
}

// watch is one stream's open request for one type.
type watch struct {
	req *discoverygrpc.DiscoveryRequest
	sub cachev3.Subscription
	out chan cachev3.Response
	// names are the resources it subscribes to when made (the stream changes its
	// subscription only after cancelling it); wildcard: all of them.
	names    []string
	wildcard bool
}

// watchSet is a group's open watches, and those subscribing to each resource, so
// that a change of one resource looks only at its watches.
type watchSet struct {
	all    map[*watch]struct{}
	byName map[typedName]map[*watch]struct{} // not wildcards
}

type typedName struct{ typ, name string }

func (ws *watchSet) add(w *watch) {
	ws.all[w] = struct{}{}
	if w.wildcard {
		return
	}
	for _, name := range w.names {
		k := typedName{w.req.GetTypeUrl(), name}
		if ws.byName[k] == nil {
			ws.byName[k] = map[*watch]struct{}{}
		}
		ws.byName[k][w] = struct{}{}
	}
}

func (ws *watchSet) remove(w *watch) {
	delete(ws.all, w)
	if w.wildcard {
		return
	}
	for _, name := range w.names {
		k := typedName{w.req.GetTypeUrl(), name}
		if m := ws.byName[k]; m != nil {
			delete(m, w)
			if len(m) == 0 {
				delete(ws.byName, k)
			}
		}
	}
}

func newCache() *cache {
	return &cache{shared: map[string]*resources{}, eds: map[string]*resources{}, watches: map[string]*watchSet{}}
}

// typeOf is the resources group key is served of typ; nil until set.
func (c *cache) typeOf(key, typ string) *resources {
	if typ == resourcev3.EndpointType {
		return c.eds[key]
	}
	return c.shared[typ]
}

// setShared publishes the resources of a shared type for every group, answering
// every watch it changes.
func (c *cache) setShared(typ string, rs *resources) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shared[typ] = rs
	for key, ws := range c.watches {
		c.answer(key, ws, typ, nil)
	}
}

// setEndpoints publishes the load assignments of group key. changed are the names of
// the load assignments that changed (built or removed) since the last set; nil:
// any may have.
func (c *cache) setEndpoints(key string, rs *resources, changed []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eds[key] = rs
	if ws := c.watches[key]; ws != nil {
		c.answer(key, ws, resourcev3.EndpointType, changed)
	}
}

// clear forgets group key's load assignments (its last stream closed).
func (c *cache) clear(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.eds, key)
}

// answer responds to the watches of ws of type typ that the group's current
// resources change, and closes them: those subscribing to a name in changed, and
// wildcards; every one of the type if changed is nil. c.mu is held.
func (c *cache) answer(key string, ws *watchSet, typ string, changed []string) {
	rs := c.typeOf(key, typ)
	if rs == nil {
		return
	}
	try := func(w *watch) {
		if w.req.GetTypeUrl() != typ {
			return
		}
		if resp := respond(w, rs); resp != nil {
			ws.remove(w)
			c.send(w, resp)
		}
	}
	if changed == nil {
		for w := range ws.all {
			try(w)
		}
		return
	}
	var candidates []*watch
	for w := range ws.all {
		if w.wildcard {
			candidates = append(candidates, w)
		}
	}
	for _, name := range changed {
		for w := range ws.byName[typedName{typ, name}] {
			candidates = append(candidates, w)
		}
	}
	for _, w := range candidates {
		if _, open := ws.all[w]; open { // a watch of two changed names is answered once
			try(w)
		}
	}
}

// send hands resp to its stream. The stream's channel holds a response of every type,
// and a stream holds at most one watch of a type: it is never full.
func (c *cache) send(w *watch, resp *response) {
	select {
	case w.out <- resp:
	default:
		droppedResponses.Inc()
	}
}

// CreateWatch answers the request at once if the group holds resources the stream
// subscribes to and was not sent at their version, else when it does.
func (c *cache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	key := groupOf(req.GetNode()).key()
	w := &watch{req: req, sub: sub, out: out, wildcard: sub.IsWildcard()}
	if !w.wildcard {
		for name := range sub.SubscribedResources() {
			w.names = append(w.names, name)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rs := c.typeOf(key, req.GetTypeUrl()); rs != nil {
		if resp := respond(w, rs); resp != nil {
			c.send(w, resp)
			return func() {}, nil
		}
	}
	ws := c.watches[key]
	if ws == nil {
		ws = &watchSet{all: map[*watch]struct{}{}, byName: map[typedName]map[*watch]struct{}{}}
		c.watches[key] = ws
	}
	ws.add(w)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if ws := c.watches[key]; ws != nil {
			ws.remove(w)
			if len(ws.all) == 0 {
				delete(c.watches, key)
			}
		}
	}, nil
}

// CreateDeltaWatch refuses: the server serves state-of-the-world ADS only.
func (c *cache) CreateDeltaWatch(*cachev3.DeltaRequest, cachev3.Subscription, chan cachev3.DeltaResponse) (func(), error) {
	return nil, errors.New("meshfed's xDS server serves state-of-the-world ADS only")
}

// Fetch refuses: the server serves state-of-the-world ADS only.
func (c *cache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errors.New("meshfed's xDS server serves state-of-the-world ADS only")
}

// respond is w's response from rs, or nil if rs holds nothing w must be sent: every
// resource the stream subscribes to (all of them for a wildcard subscription) that
// it was not sent at its current version, or that was sent and went away. The first
// request of a type is always answered, with what exists of what it asks for. A NACK
// is not answered: the stream was sent the current versions, so it waits for another.
func respond(w *watch, rs *resources) *response {
	returned := w.sub.ReturnedResources()
	send := len(returned) == 0 && w.req.GetVersionInfo() == ""
	var names []string
	if w.sub.IsWildcard() {
		rs.all(func(name string, r *resource) {
			names = append(names, name)
			if v, ok := returned[name]; !ok || v != r.vs {
				send = true
			}
		})
		for name := range returned {
			if _, ok := rs.get(name); !ok {
				send = true // gone
			}
		}
	} else {
		for name := range w.sub.SubscribedResources() {
			r, ok := rs.get(name)
			v, sent := returned[name]
			switch {
			case ok:
				names = append(names, name)
				if !sent || v != r.vs {
					send = true
				}
			case sent:
				send = true // gone
			}
		}
	}
	if !send {
		return nil
	}
	resp := &response{req: w.req, version: versionString(rs.version), returned: make(map[string]string, len(names)),
		resources: make([]*anypb.Any, 0, len(names))}
	for _, name := range names {
		r, _ := rs.get(name)
		resp.returned[name] = r.vs
		resp.resources = append(resp.resources, r.any)
	}
	return resp
}

func versionString(v uint64) string { return strconv.FormatUint(v, 10) }

// response is a state-of-the-world response whose resources are shared with every
// other response of their version.
type response struct {
	req       *discoverygrpc.DiscoveryRequest
	version   string
	returned  map[string]string
	resources []*anypb.Any
}

// GetDiscoveryResponse returns a new DiscoveryResponse (the server writes its nonce
// into it) holding the shared resources.
func (r *response) GetDiscoveryResponse() (*discoverygrpc.DiscoveryResponse, error) {
	return &discoverygrpc.DiscoveryResponse{VersionInfo: r.version, Resources: r.resources, TypeUrl: r.req.GetTypeUrl()}, nil
}

func (r *response) GetRequest() *discoverygrpc.DiscoveryRequest { return r.req }
func (r *response) GetVersion() (string, error)                 { return r.version, nil }
func (r *response) GetResponseVersion() string                  { return r.version }
func (r *response) GetReturnedResources() map[string]string     { return r.returned }
func (r *response) GetContext() context.Context                 { return context.Background() }

// decode is the resource named name of type typ that group key is served, decoded:
// for tests and debugging.
func (c *cache) decode(key, typ, name string) (proto.Message, error) {
	c.mu.Lock()
	rs := c.typeOf(key, typ)
	c.mu.Unlock()
	if rs == nil {
		return nil, fmt.Errorf("group %s has no %s resources", key, typ)
	}
	r, ok := rs.get(name)
	if !ok {
		return nil, fmt.Errorf("group %s has no %s %s", key, typ, name)
	}
	return r.any.UnmarshalNew()
}
