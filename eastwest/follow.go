package eastwest

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"

	"github.com/meshfed/meshfed/eastwest/internal/adsclient"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

// FollowXDS takes the gateway's configuration from its cluster's agent at server
// (host:port) over ADS, identifying as nodeID, until ctx is done: the listener
// xdsnames.GatewayListener and the load assignments of the clusters it names. Every
// consistent state is handed to SetRoutes.
func (g *Gateway) FollowXDS(ctx context.Context, server, nodeID string, log logr.Logger) error {
	ads := adsclient.New(server, &corev3.Node{Id: nodeID}, log)
	go configure(ctx, ads, g, log)
	return ads.Run(ctx)
}

// configure follows the gateway's listener and the load assignments of the clusters
// it names, and hands every consistent state to the gateway.
func configure(ctx context.Context, ads *adsclient.Client, gw *Gateway, log logr.Logger) {
	ads.Subscribe(resourcev3.ListenerType, []string{xdsnames.GatewayListener})
	var listener *listenerv3.Listener
	assignments := map[string]*endpointv3.ClusterLoadAssignment{}
	for {
		var u adsclient.Update
		select {
		case <-ctx.Done():
			return
		case u = <-ads.Updates():
		}
		switch u.TypeURL {
		case resourcev3.ListenerType:
			l := &listenerv3.Listener{}
			if r, ok := u.Resources[xdsnames.GatewayListener]; !ok || r.UnmarshalTo(l) != nil {
				continue
			}
			listener = l
			ads.Subscribe(resourcev3.EndpointType, clustersOf(l))
		case resourcev3.EndpointType:
			assignments = map[string]*endpointv3.ClusterLoadAssignment{}
			for name, r := range u.Resources {
				cla := &endpointv3.ClusterLoadAssignment{}
				if r.UnmarshalTo(cla) == nil {
					assignments[name] = cla
				}
			}
		}
		if listener == nil {
			continue
		}
		routes, err := FromXDS(listener, assignments)
		if err != nil {
			log.Error(err, "gateway configuration refused; keeping the routes in use")
			continue
		}
		if err := gw.SetRoutes(routes); err != nil {
			log.Error(err, "set gateway routes")
		}
	}
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
