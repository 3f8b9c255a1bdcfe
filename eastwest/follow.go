package eastwest

import (
	"context"
	"fmt"

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
// the clusters that listener names. An update is ACKed once its routes are in use
// (FromXDS accepted it and SetRoutes took it), or, for load assignments that arrive
// before any listener, once they are kept for it; any other update is NACKed with the
// reason and the gateway keeps the routes it has. dial tunes the connection to the
// agent: its transport credentials when the agent's xDS requires mTLS.
func (g *Gateway) FollowXDS(ctx context.Context, server, nodeID string, log logr.Logger, dial ...grpc.DialOption) error {
	f := &follower{gw: g}
	ads := adsclient.New(server, &corev3.Node{Id: nodeID}, f.apply, log, dial...)
	f.subscribe = ads.Subscribe
	ads.Subscribe(resourcev3.ListenerType, []string{xdsnames.GatewayListener})
	return ads.Run(ctx)
}

// follower is the accepted xDS state behind the gateway's routes. Only the ADS
// client's goroutine calls apply.
type follower struct {
	gw        *Gateway
	subscribe func(typeURL string, names []string)

	listener    *listenerv3.Listener // last accepted; nil until the first
	assignments map[string]*endpointv3.ClusterLoadAssignment
}

// apply is the ADS client's Handler: it returns nil only once the update is in use,
// and on error leaves the routes and the accepted state as they were.
func (f *follower) apply(_ context.Context, u adsclient.Update) error {
	switch u.TypeURL {
	case resourcev3.ListenerType:
		l, err := gatewayListenerOf(u.Resources)
		if err != nil {
			return err
		}
		if err := f.setRoutes(l, f.assignments); err != nil {
			return err
		}
		f.subscribe(resourcev3.EndpointType, clustersOf(l))
		return nil
	case resourcev3.EndpointType:
		assignments, err := assignmentsOf(u.Resources)
		if err != nil {
			return err
		}
		if f.listener == nil {
			// Nothing to route yet: keep them for the listener.
			f.assignments = assignments
			return nil
		}
		return f.setRoutes(f.listener, assignments)
	default:
		// The client only hands over subscribed types; this is a bug, refuse it.
		return fmt.Errorf("eastwest: xDS type %q is not followed", u.TypeURL)
	}
}

// setRoutes translates l and assignments and hands the routes to the gateway; only
// when both succeed do they become the accepted state.
func (f *follower) setRoutes(l *listenerv3.Listener, assignments map[string]*endpointv3.ClusterLoadAssignment) error {
	routes, err := FromXDS(l, assignments)
	if err != nil {
		return err
	}
	if err := f.gw.SetRoutes(routes); err != nil {
		return fmt.Errorf("eastwest: set routes: %w", err)
	}
	f.listener, f.assignments = l, assignments
	return nil
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
