package eastwest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/eastwest/internal/adsclient"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

// FollowXDS takes the gateway's configuration from its cluster's agent at server
// (host:port) over ADS, identifying as nodeID, until ctx is done; then it returns
// nil. It follows the listener xdsnames.GatewayListener and the load assignments of
// the clusters that listener names.
//
// Every update is applied route by route: the routes FromXDS accepts are put in use
// at once, and each part it refuses is left out while the rest applies. A refused
// listener part keeps the endpoints its names had, if they had any; a refused load
// assignment is not taken, so its cluster keeps the last one accepted (none: its
// names have no endpoint). The update is then ACKed if nothing in it was refused, or
// NACKed with an error_detail naming each refused part (and the version last
// accepted whole): a NACK does not mean "nothing changed", the good part is in use.
// An update that cannot be read at all (the listener missing, a resource that does
// not decode) is NACKed and changes nothing.
//
// Load assignments are merged by cluster name, as the xDS protocol has it for
// state-of-the-world EDS (a response may carry only the clusters that changed); those
// of clusters the listener no longer names are dropped. dial tunes the connection to
// the agent: its transport credentials when the agent's xDS requires mTLS.
func (g *Gateway) FollowXDS(ctx context.Context, server, nodeID string, log logr.Logger, dial ...grpc.DialOption) error {
	f := &follower{gw: g, log: log, assignments: map[string]*endpointv3.ClusterLoadAssignment{}, refusedCLAs: map[string]RouteRejection{}}
	ads := adsclient.New(server, &corev3.Node{Id: nodeID}, f.apply, log, dial...)
	f.subscribe = ads.Subscribe
	ads.Subscribe(resourcev3.ListenerType, []string{xdsnames.GatewayListener})
	return ads.Run(ctx)
}

// follower is the xDS state behind the gateway's routes. Only the ADS client's
// goroutine calls apply.
type follower struct {
	gw        *Gateway
	log       logr.Logger
	subscribe func(typeURL string, names []string)

	listener    *listenerv3.Listener                         // last applied, in whole or in part; nil until the first
	assignments map[string]*endpointv3.ClusterLoadAssignment // accepted, by cluster
	refusedCLAs map[string]RouteRejection                    // the server's current assignment of a cluster, refused
	rejected    []RouteRejection                             // what the listener in use had refused
}

// apply is the ADS client's Handler: it returns nil once the whole update is in use,
// a RejectedRoutesError once its good part is in use and the rest refused, and any
// other error when nothing of it was applied.
func (f *follower) apply(_ context.Context, u adsclient.Update) error {
	switch u.TypeURL {
	case resourcev3.ListenerType:
		l, err := gatewayListenerOf(u.Resources)
		if err != nil {
			updatesTotal.WithLabelValues(typeListener, updateRefused).Inc()
			return err
		}
		return f.applyListener(l)
	case resourcev3.EndpointType:
		assignments, err := assignmentsOf(u.Resources)
		if err != nil {
			updatesTotal.WithLabelValues(typeEndpoints, updateRefused).Inc()
			return err
		}
		return f.applyAssignments(assignments)
	default:
		// The client only hands over subscribed types; this is a bug, refuse it.
		return fmt.Errorf("eastwest: xDS type %q is not followed", u.TypeURL)
	}
}

// applyListener puts l's good routes in use and subscribes to its clusters.
func (f *follower) applyListener(l *listenerv3.Listener) error {
	clusters := clustersOf(l)
	maps.DeleteFunc(f.assignments, func(c string, _ *endpointv3.ClusterLoadAssignment) bool { return !slices.Contains(clusters, c) })
	maps.DeleteFunc(f.refusedCLAs, func(c string, _ RouteRejection) bool { return !slices.Contains(clusters, c) })
	rejected, err := f.setRoutes(l)
	if err != nil {
		updatesTotal.WithLabelValues(typeListener, updateRefused).Inc()
		return err
	}
	f.subscribe(resourcev3.EndpointType, clusters)
	return f.report(typeListener, rejected)
}

// applyAssignments takes the good load assignments of an update, keeps the last
// accepted one of each cluster whose new one is refused, and puts the routes in use.
func (f *follower) applyAssignments(update map[string]*endpointv3.ClusterLoadAssignment) error {
	var rejected []RouteRejection
	for _, cluster := range slices.Sorted(maps.Keys(update)) {
		if _, err := readyEndpoints(update[cluster]); err != nil {
			r := RouteRejection{Chain: "(load assignment)", Cluster: cluster, Reason: rejectEndpoints, Err: fmt.Errorf("cluster %q: %w", cluster, err)}
			f.refusedCLAs[cluster] = r
			rejected = append(rejected, r)
			continue
		}
		f.assignments[cluster] = update[cluster]
		delete(f.refusedCLAs, cluster)
	}
	if f.listener != nil {
		if _, err := f.setRoutes(f.listener); err != nil {
			updatesTotal.WithLabelValues(typeEndpoints, updateRefused).Inc()
			return err
		}
	}
	return f.report(typeEndpoints, rejected)
}

// setRoutes translates l with the accepted load assignments and hands the routes
// FromXDS accepted to the gateway, each name of a refused part keeping the endpoints
// it had; then l is the listener in use. It returns what FromXDS refused.
func (f *follower) setRoutes(l *listenerv3.Listener) ([]RouteRejection, error) {
	routes, rejected, err := FromXDS(l, f.assignments)
	if err != nil {
		return nil, err
	}
	current := f.gw.Routes()
	for _, r := range rejected {
		for _, name := range r.Names {
			if eps, had := current[name]; had {
				if _, set := routes[name]; !set {
					routes[name] = eps
				}
			}
		}
	}
	if err := f.gw.SetRoutes(routes); err != nil {
		return nil, fmt.Errorf("eastwest: set routes: %w", err)
	}
	f.listener, f.rejected = l, rejected
	return rejected, nil
}

// report counts an applied update of typ, sets rejected_routes to what the
// configuration in use refused, and logs and returns the update's own rejections.
func (f *follower) report(typ string, rejected []RouteRejection) error {
	all := slices.Concat(f.rejected, slices.Collect(maps.Values(f.refusedCLAs)))
	setRejectedRoutes(all)
	if len(rejected) == 0 {
		updatesTotal.WithLabelValues(typ, updateApplied).Inc()
		return nil
	}
	updatesTotal.WithLabelValues(typ, updatePartial).Inc()
	for i, r := range rejected {
		if i == maxLoggedRejections {
			f.log.Info("More routes rejected", "count", len(rejected)-i)
			break
		}
		f.log.Info("Route rejected; the other routes are in use", "type", typ, "chain", r.Chain, "serverNames", r.Names,
			"cluster", r.Cluster, "reason", r.Reason, "error", r.Err.Error())
	}
	return &RejectedRoutesError{Rejected: rejected, Routes: len(f.gw.routes.Load().routes)}
}

// maxLoggedRejections bounds the log lines and the error detail of one update.
const maxLoggedRejections = 10

// RejectedRoutesError is what FollowXDS NACKs an update with when it applied the
// update's good routes and refused the others.
type RejectedRoutesError struct {
	Rejected []RouteRejection
	Routes   int // routes in use after the update
}

func (e *RejectedRoutesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "eastwest: %d route(s) rejected, the other %d routes are in use (a rejected name keeps the endpoints it had, if any): ",
		len(e.Rejected), e.Routes)
	for i, r := range e.Rejected {
		if i == maxLoggedRejections {
			fmt.Fprintf(&b, "; and %d more", len(e.Rejected)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.Error())
	}
	return b.String()
}

// gatewayListenerOf finds and decodes xdsnames.GatewayListener in a listener update.
// An update without it is refused rather than taken as "no routes": the gateway keeps
// serving what it has until the agent sends a listener it can use.
func gatewayListenerOf(resources []*anypb.Any) (*listenerv3.Listener, error) {
	for _, r := range resources {
		l := &listenerv3.Listener{}
		if err := r.UnmarshalTo(l); err != nil {
			return nil, fmt.Errorf("eastwest: decode listener: %w", err)
		}
		if l.GetName() == xdsnames.GatewayListener {
			return l, nil
		}
	}
	return nil, fmt.Errorf("eastwest: listener %q is not in the update", xdsnames.GatewayListener)
}

// assignmentsOf decodes a load assignment update, by cluster name.
func assignmentsOf(resources []*anypb.Any) (map[string]*endpointv3.ClusterLoadAssignment, error) {
	out := make(map[string]*endpointv3.ClusterLoadAssignment, len(resources))
	for _, r := range resources {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := r.UnmarshalTo(cla); err != nil {
			return nil, fmt.Errorf("eastwest: decode load assignment: %w", err)
		}
		out[cla.GetClusterName()] = cla
	}
	return out, nil
}

// clustersOf lists the clusters the listener's tcp_proxy filters name.
func clustersOf(l *listenerv3.Listener) []string {
	var out []string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			tp := &tcpproxyv3.TcpProxy{}
			if f.GetTypedConfig() != nil && f.GetTypedConfig().UnmarshalTo(tp) == nil && tp.GetCluster() != "" {
				out = append(out, tp.GetCluster())
			}
		}
	}
	return out
}
