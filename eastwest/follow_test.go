package eastwest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

// The tests in this file run the gateway's xDS following (FollowXDS) against a real
// go-control-plane ADS server: one LinearCache per type behind a MuxCache, with server
// callbacks recording every request and response on the wire.

// xdsRecorder keeps what crossed the wire, as the server saw it.
type xdsRecorder struct {
	mu    sync.Mutex
	reqs  []*discoveryv3.DiscoveryRequest
	resps []*discoveryv3.DiscoveryResponse
}

func (r *xdsRecorder) requests() []*discoveryv3.DiscoveryRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

func (r *xdsRecorder) responses() []*discoveryv3.DiscoveryResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.resps)
}

// lastResponse is the last response of typeURL the server sent, or nil.
func (r *xdsRecorder) lastResponse(typeURL string) *discoveryv3.DiscoveryResponse {
	resps := r.responses()
	for i := len(resps) - 1; i >= 0; i-- {
		if resps[i].GetTypeUrl() == typeURL {
			return resps[i]
		}
	}
	return nil
}

// testXDS is an agent's xDS server as far as the gateway can tell.
type testXDS struct {
	addr     string
	lds, eds *cachev3.LinearCache
	rec      *xdsRecorder
	stop     func()
}

// injectingCache sends extra, a response of another type, on the first watch it is
// asked for, before the cache's own answer: a server that pushes what the client never
// subscribed to. It is carried as an answer to that watch's request, so the server
// accepts to send it.
type injectingCache struct {
	cachev3.Cache
	once  sync.Once
	extra *discoveryv3.DiscoveryResponse
}

func (c *injectingCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	c.once.Do(func() {
		out <- &cachev3.PassthroughResponse{Request: req, DiscoveryResponse: proto.Clone(c.extra).(*discoveryv3.DiscoveryResponse)}
	})
	return c.Cache.CreateWatch(req, sub, out)
}

// startXDS serves ADS on addr ("" for any port) until the test ends or stop is
// called. extra, if not nil, is pushed on the stream before the first listener answer.
func startXDS(t *testing.T, addr string, lds, eds *cachev3.LinearCache, extra *discoveryv3.DiscoveryResponse) *testXDS {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	x := &testXDS{addr: ln.Addr().String(), lds: lds, eds: eds, rec: &xdsRecorder{}}
	var (
		ldsCache cachev3.Cache = lds
		opts     []config.XDSOption
	)
	if extra != nil {
		ldsCache = &injectingCache{Cache: lds, extra: extra}
		// Ordered ADS gives every watch one channel with room for a response of each
		// type; the default gives a watch room for one, which the injection would fill.
		opts = append(opts, sotwv3.WithOrderedADS())
	}
	mux := &cachev3.MuxCache{
		Classify: func(r *cachev3.Request) string { return r.GetTypeUrl() },
		Caches:   map[string]cachev3.Cache{resourcev3.ListenerType: ldsCache, resourcev3.EndpointType: eds},
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := serverv3.NewServer(ctx, mux, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			x.rec.mu.Lock()
			x.rec.reqs = append(x.rec.reqs, proto.Clone(req).(*discoveryv3.DiscoveryRequest))
			x.rec.mu.Unlock()
			return nil
		},
		StreamResponseFunc: func(_ context.Context, _ int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			x.rec.mu.Lock()
			x.rec.resps = append(x.rec.resps, proto.Clone(resp).(*discoveryv3.DiscoveryResponse))
			x.rec.mu.Unlock()
		},
	}, opts...)
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		g.Serve(ln) //nolint:errcheck // ends with Stop
	}()
	var once sync.Once
	x.stop = func() {
		once.Do(func() {
			g.Stop()
			cancel()
			<-served
		})
	}
	t.Cleanup(x.stop)
	return x
}

// newXDSCaches returns empty listener and endpoint caches.
func newXDSCaches() (lds, eds *cachev3.LinearCache) {
	return cachev3.NewLinearCache(resourcev3.ListenerType), cachev3.NewLinearCache(resourcev3.EndpointType)
}

// followedGateway is a gateway taking its routes from x, until the test ends.
func followedGateway(t *testing.T, x *testXDS) *Gateway {
	t.Helper()
	gw, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "FollowXDS", func(ctx context.Context) error {
		return gw.FollowXDS(ctx, x.addr, "eastwest~test", logr.Discard())
	})
	return gw
}

// routeTo is the gateway's listener with one chain, sni to cluster, as the agent
// builds it.
func routeTo(t *testing.T, cluster, sni string) *listenerv3.Listener {
	l := gatewayListener(t, sniChain(t, cluster, sni))
	l.Name = xdsnames.GatewayListener
	return l
}

func claFor(cluster string, ep netip.AddrPort) *endpointv3.ClusterLoadAssignment {
	return assignment(cluster, lbEP{ep.Addr().String(), uint32(ep.Port()), corev3.HealthStatus_HEALTHY, 0})
}

// hasRoute reports whether the gateway routes sni to exactly ep.
func hasRoute(gw *Gateway, sni string, ep netip.AddrPort) error {
	got := gw.Routes()[sni]
	if len(got) != 1 || got[0] != ep {
		return fmt.Errorf("routes for %s: %v, want [%v]", sni, got, ep)
	}
	return nil
}

// acked waits until the server has seen the gateway ACK the last response of typeURL:
// a request carrying its version and nonce and no error.
func acked(t *testing.T, x *testXDS, typeURL string) *discoveryv3.DiscoveryResponse {
	t.Helper()
	var resp *discoveryv3.DiscoveryResponse
	testutil.Eventually(t, 10*time.Second, "an ACK of the last "+typeURL, func() error {
		resp = x.rec.lastResponse(typeURL)
		if resp == nil {
			return errors.New("no response sent yet")
		}
		for _, req := range x.rec.requests() {
			if req.GetTypeUrl() != typeURL || req.GetResponseNonce() != resp.GetNonce() {
				continue
			}
			if req.GetErrorDetail() != nil {
				return fmt.Errorf("response %s (version %s) was NACKed: %s", resp.GetNonce(), resp.GetVersionInfo(), req.GetErrorDetail().GetMessage())
			}
			if req.GetVersionInfo() != resp.GetVersionInfo() {
				return fmt.Errorf("answer to nonce %s carries version %q, want %q", resp.GetNonce(), req.GetVersionInfo(), resp.GetVersionInfo())
			}
			return nil
		}
		return fmt.Errorf("no answer yet to nonce %s", resp.GetNonce())
	})
	return resp
}

// TestFollowXDSNacksRefusedConfiguration: a listener FromXDS refuses is NACKed, with
// the refusal as error_detail, the last accepted version and the response's nonce;
// the gateway keeps the routes it had. The next good configuration is ACKed and
// applied.
func TestFollowXDSNacksRefusedConfiguration(t *testing.T) {
	sni, _ := uniqueSNI(t.Name())
	host, _, _ := xdsnames.ParseSNI(sni)
	cluster := "outbound|8080||" + host
	ep1, ep2 := netip.MustParseAddrPort("10.0.0.1:8080"), netip.MustParseAddrPort("10.0.0.2:8080")
	lds, eds := newXDSCaches()
	if err := lds.UpdateResource(xdsnames.GatewayListener, routeTo(t, cluster, sni)); err != nil {
		t.Fatal(err)
	}
	if err := eds.UpdateResource(cluster, claFor(cluster, ep1)); err != nil {
		t.Fatal(err)
	}
	x := startXDS(t, "", lds, eds, nil)
	gw := followedGateway(t, x)

	testutil.Eventually(t, 10*time.Second, "the first configuration applied", func() error { return hasRoute(gw, sni, ep1) })
	good := acked(t, x, resourcev3.ListenerType)
	acked(t, x, resourcev3.EndpointType)

	// A wildcard server name: valid Envoy configuration the gateway cannot honour.
	bad := gatewayListener(t, sniChain(t, cluster, sni), sniChain(t, "other", "*.shop.svc.clusterset.local"))
	bad.Name = xdsnames.GatewayListener
	if err := lds.UpdateResource(xdsnames.GatewayListener, bad); err != nil {
		t.Fatal(err)
	}
	var badResp *discoveryv3.DiscoveryResponse
	testutil.Eventually(t, 10*time.Second, "the bad listener to be sent", func() error {
		badResp = x.rec.lastResponse(resourcev3.ListenerType)
		if badResp.GetVersionInfo() == good.GetVersionInfo() {
			return errors.New("not sent yet")
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, "a NACK of the bad listener", func() error {
		for _, req := range x.rec.requests() {
			if req.GetTypeUrl() != resourcev3.ListenerType || req.GetResponseNonce() != badResp.GetNonce() {
				continue
			}
			switch {
			case req.GetErrorDetail() == nil:
				return fmt.Errorf("the bad listener was ACKed (version %q)", req.GetVersionInfo())
			case !strings.Contains(req.GetErrorDetail().GetMessage(), "wildcard"):
				return fmt.Errorf("NACK error_detail %q does not give the reason", req.GetErrorDetail().GetMessage())
			case req.GetVersionInfo() != good.GetVersionInfo():
				return fmt.Errorf("NACK carries version %q, want the last accepted %q", req.GetVersionInfo(), good.GetVersionInfo())
			}
			return nil
		}
		return errors.New("no answer yet")
	})
	if err := hasRoute(gw, sni, ep1); err != nil {
		t.Errorf("after the NACK: %v", err)
	}
	if _, ok := gw.Routes()["*.shop.svc.clusterset.local"]; ok {
		t.Error("the refused listener's wildcard name was applied")
	}

	// A good configuration again: ACKed and applied.
	if err := eds.UpdateResource(cluster, claFor(cluster, ep2)); err != nil {
		t.Fatal(err)
	}
	if err := lds.UpdateResource(xdsnames.GatewayListener, routeTo(t, cluster, sni)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the next good configuration applied", func() error { return hasRoute(gw, sni, ep2) })
	if got := acked(t, x, resourcev3.ListenerType); got.GetVersionInfo() == badResp.GetVersionInfo() {
		t.Errorf("last listener response is still the bad one")
	}
	acked(t, x, resourcev3.EndpointType)
}

// TestFollowXDSNacksBadEndpoints: a load assignment FromXDS refuses (an endpoint that
// is not an IP address) is NACKed and the routes stay as they were.
func TestFollowXDSNacksBadEndpoints(t *testing.T) {
	sni, _ := uniqueSNI(t.Name())
	host, _, _ := xdsnames.ParseSNI(sni)
	cluster := "outbound|8080||" + host
	ep1 := netip.MustParseAddrPort("10.0.0.1:8080")
	lds, eds := newXDSCaches()
	if err := lds.UpdateResource(xdsnames.GatewayListener, routeTo(t, cluster, sni)); err != nil {
		t.Fatal(err)
	}
	if err := eds.UpdateResource(cluster, claFor(cluster, ep1)); err != nil {
		t.Fatal(err)
	}
	x := startXDS(t, "", lds, eds, nil)
	gw := followedGateway(t, x)
	testutil.Eventually(t, 10*time.Second, "the first configuration applied", func() error { return hasRoute(gw, sni, ep1) })
	good := acked(t, x, resourcev3.EndpointType)

	if err := eds.UpdateResource(cluster, assignment(cluster, lbEP{"cart.local", 8080, corev3.HealthStatus_HEALTHY, 0})); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a NACK of the bad assignment", func() error {
		resp := x.rec.lastResponse(resourcev3.EndpointType)
		if resp.GetVersionInfo() == good.GetVersionInfo() {
			return errors.New("not sent yet")
		}
		for _, req := range x.rec.requests() {
			if req.GetTypeUrl() != resourcev3.EndpointType || req.GetResponseNonce() != resp.GetNonce() {
				continue
			}
			if req.GetErrorDetail() == nil || !strings.Contains(req.GetErrorDetail().GetMessage(), "not an IP") {
				return fmt.Errorf("answer %v, want a NACK saying the endpoint is not an IP", req)
			}
			if req.GetVersionInfo() != good.GetVersionInfo() {
				return fmt.Errorf("NACK carries version %q, want %q", req.GetVersionInfo(), good.GetVersionInfo())
			}
			return nil
		}
		return errors.New("no answer yet")
	})
	if err := hasRoute(gw, sni, ep1); err != nil {
		t.Errorf("after the NACK: %v", err)
	}
}

// TestFollowXDSIgnoresUnsubscribedTypes: a response of a type the gateway never
// subscribed to is ignored (neither applied nor answered) and crashes nothing; the
// stream goes on.
func TestFollowXDSIgnoresUnsubscribedTypes(t *testing.T) {
	sni, _ := uniqueSNI(t.Name())
	host, _, _ := xdsnames.ParseSNI(sni)
	cluster := "outbound|8080||" + host
	ep := netip.MustParseAddrPort("10.0.0.1:8080")
	lds, eds := newXDSCaches()
	if err := lds.UpdateResource(xdsnames.GatewayListener, routeTo(t, cluster, sni)); err != nil {
		t.Fatal(err)
	}
	if err := eds.UpdateResource(cluster, claFor(cluster, ep)); err != nil {
		t.Fatal(err)
	}
	stray, err := anypb.New(wrapperspb.String("not a cluster"))
	if err != nil {
		t.Fatal(err)
	}
	extra := &discoveryv3.DiscoveryResponse{
		TypeUrl: resourcev3.ClusterType, VersionInfo: "stray", Resources: []*anypb.Any{stray},
	}
	x := startXDS(t, "", lds, eds, extra)
	gw := followedGateway(t, x)

	testutil.Eventually(t, 10*time.Second, "the configuration applied", func() error { return hasRoute(gw, sni, ep) })
	acked(t, x, resourcev3.ListenerType)
	acked(t, x, resourcev3.EndpointType)
	if x.rec.lastResponse(resourcev3.ClusterType) == nil {
		t.Fatal("the stray response was never sent; the test tests nothing")
	}
	for _, req := range x.rec.requests() {
		if req.GetTypeUrl() == resourcev3.ClusterType {
			t.Errorf("the gateway answered the stray response: %v", req)
		}
	}
}

// TestFollowXDSResubscribesAfterReconnect: when the agent's xDS server goes away and
// comes back, the gateway reconnects, subscribes again to what it follows, and
// applies the new server's configuration.
func TestFollowXDSResubscribesAfterReconnect(t *testing.T) {
	sni, _ := uniqueSNI(t.Name())
	host, _, _ := xdsnames.ParseSNI(sni)
	cluster := "outbound|8080||" + host
	ep1, ep2 := netip.MustParseAddrPort("10.0.0.1:8080"), netip.MustParseAddrPort("10.0.0.2:8080")
	lds, eds := newXDSCaches()
	if err := lds.UpdateResource(xdsnames.GatewayListener, routeTo(t, cluster, sni)); err != nil {
		t.Fatal(err)
	}
	if err := eds.UpdateResource(cluster, claFor(cluster, ep1)); err != nil {
		t.Fatal(err)
	}
	x := startXDS(t, "", lds, eds, nil)
	gw := followedGateway(t, x)
	testutil.Eventually(t, 10*time.Second, "the first configuration applied", func() error { return hasRoute(gw, sni, ep1) })

	x.stop()
	lds2, eds2 := cachev3.NewLinearCache(resourcev3.ListenerType, cachev3.WithVersionPrefix("b-")),
		cachev3.NewLinearCache(resourcev3.EndpointType, cachev3.WithVersionPrefix("b-"))
	if err := lds2.UpdateResource(xdsnames.GatewayListener, routeTo(t, cluster, sni)); err != nil {
		t.Fatal(err)
	}
	if err := eds2.UpdateResource(cluster, claFor(cluster, ep2)); err != nil {
		t.Fatal(err)
	}
	x2 := startXDS(t, x.addr, lds2, eds2, nil)
	testutil.Eventually(t, 20*time.Second, "the new server's configuration applied", func() error { return hasRoute(gw, sni, ep2) })
	acked(t, x2, resourcev3.ListenerType)
	acked(t, x2, resourcev3.EndpointType)
	var subscribed []string
	for _, req := range x2.rec.requests() {
		subscribed = append(subscribed, req.GetTypeUrl()+"="+strings.Join(req.GetResourceNames(), ","))
	}
	for _, want := range []string{
		resourcev3.ListenerType + "=" + xdsnames.GatewayListener,
		resourcev3.EndpointType + "=" + cluster,
	} {
		if !slices.Contains(subscribed, want) {
			t.Errorf("requests to the new server %v, want a subscription %s", subscribed, want)
		}
	}
}

// answerTo waits for the gateway's answer to the first response of typeURL sent
// after the response after (nil: from the start) with another version, and returns
// both: the answer is the request carrying the response's nonce.
func answerTo(t *testing.T, x *testXDS, typeURL string, after *discoveryv3.DiscoveryResponse) (*discoveryv3.DiscoveryResponse, *discoveryv3.DiscoveryRequest) {
	t.Helper()
	var (
		resp   *discoveryv3.DiscoveryResponse
		answer *discoveryv3.DiscoveryRequest
	)
	testutil.Eventually(t, 10*time.Second, "an answer to a new "+typeURL, func() error {
		resp = nil
		seen := after == nil
		for _, r := range x.rec.responses() {
			switch {
			case !seen:
				seen = r.GetNonce() == after.GetNonce()
			case r.GetTypeUrl() == typeURL && r.GetVersionInfo() != after.GetVersionInfo():
				resp = r
			}
			if resp != nil {
				break
			}
		}
		if resp == nil {
			return errors.New("no new response yet")
		}
		for _, req := range x.rec.requests() {
			if req.GetTypeUrl() == typeURL && req.GetResponseNonce() == resp.GetNonce() {
				answer = req
				return nil
			}
		}
		return fmt.Errorf("no answer yet to nonce %s", resp.GetNonce())
	})
	return resp, answer
}

// TestFollowXDSSkipsABadRoute: a listener with a route whose server name cannot be
// a TLS server name (a 240-byte hostname makes a 258-byte SNI), among good ones. The
// gateway applies the good routes, NACKs the update naming the bad one, counts it in
// rejected_routes, and keeps taking updates: load assignments (ACKed) and listeners
// (a new good route applied, NACKed again while the bad one stays). Once the bad
// route is gone, the listener is ACKed and nothing is counted as rejected.
func TestFollowXDSSkipsABadRoute(t *testing.T) {
	cartSNI, _ := uniqueSNI(t.Name() + "-cart")
	paySNI, _ := uniqueSNI(t.Name() + "-pay")
	newSNI, _ := uniqueSNI(t.Name() + "-new")
	badSNI := xdsnames.SNI(longHostname, 8080)
	clusterOf := func(sni string) string {
		host, _, _ := xdsnames.ParseSNI(sni)
		return "outbound|8080||" + host
	}
	cart, pay, fresh, bad := clusterOf(cartSNI), clusterOf(paySNI), clusterOf(newSNI), "outbound|8080||"+longHostname
	ep := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	listener := func(chains ...*listenerv3.FilterChain) *listenerv3.Listener {
		l := gatewayListener(t, chains...)
		l.Name = xdsnames.GatewayListener
		return l
	}
	lds, eds := newXDSCaches()
	for c, e := range map[string]string{cart: "10.0.0.1:8080", pay: "10.0.1.1:8080", fresh: "10.0.2.1:8080", bad: "10.0.3.1:8080"} {
		if err := eds.UpdateResource(c, claFor(c, ep(e))); err != nil {
			t.Fatal(err)
		}
	}
	if err := lds.UpdateResource(xdsnames.GatewayListener, listener(
		sniChain(t, cart, cartSNI), sniChain(t, bad, badSNI), sniChain(t, pay, paySNI))); err != nil {
		t.Fatal(err)
	}
	x := startXDS(t, "", lds, eds, nil)
	gw := followedGateway(t, x)
	before := promtestutil.ToFloat64(updatesTotal.WithLabelValues(typeListener, updatePartial))

	testutil.Eventually(t, 10*time.Second, "the good routes applied", func() error {
		return errors.Join(hasRoute(gw, cartSNI, ep("10.0.0.1:8080")), hasRoute(gw, paySNI, ep("10.0.1.1:8080")))
	})
	if _, ok := gw.Routes()[badSNI]; ok {
		t.Fatal("the bad route is in the table")
	}
	first, answer := answerTo(t, x, resourcev3.ListenerType, nil)
	checkNACK := func(answer *discoveryv3.DiscoveryRequest) {
		t.Helper()
		switch msg := answer.GetErrorDetail().GetMessage(); {
		case answer.GetErrorDetail() == nil:
			t.Fatalf("the listener with a bad route was ACKed (version %q)", answer.GetVersionInfo())
		case !strings.Contains(msg, badSNI) || !strings.Contains(msg, "length must be 1-255") || !strings.Contains(msg, "1 route(s) rejected"):
			t.Fatalf("NACK error_detail %q does not name the bad route and why", msg)
		}
	}
	checkNACK(answer)
	if got := promtestutil.ToFloat64(rejectedRoutes.WithLabelValues(rejectServerName)); got != 1 {
		t.Errorf("rejected_routes{%s} = %v, want 1", rejectServerName, got)
	}
	if got := promtestutil.ToFloat64(updatesTotal.WithLabelValues(typeListener, updatePartial)) - before; got < 1 {
		t.Errorf("xds_updates_total{listener, partial} +%v, want at least +1", got)
	}

	// Load assignments keep coming and are ACKed: the bad listener chain is not
	// theirs to answer for.
	acked(t, x, resourcev3.EndpointType)
	if err := eds.UpdateResource(cart, claFor(cart, ep("10.0.0.2:8080"))); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a new endpoint of a good route", func() error { return hasRoute(gw, cartSNI, ep("10.0.0.2:8080")) })
	acked(t, x, resourcev3.EndpointType)

	// A new listener, the bad route still in it: the new good route applies, NACKed again.
	if err := lds.UpdateResource(xdsnames.GatewayListener, listener(
		sniChain(t, cart, cartSNI), sniChain(t, bad, badSNI), sniChain(t, pay, paySNI), sniChain(t, fresh, newSNI))); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a new good route applied", func() error { return hasRoute(gw, newSNI, ep("10.0.2.1:8080")) })
	second, answer := answerTo(t, x, resourcev3.ListenerType, first)
	checkNACK(answer)

	// The bad route removed: ACKed, nothing rejected any more.
	if err := lds.UpdateResource(xdsnames.GatewayListener, listener(
		sniChain(t, cart, cartSNI), sniChain(t, pay, paySNI), sniChain(t, fresh, newSNI))); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the fixed listener ACKed", func() error {
		if resp := x.rec.lastResponse(resourcev3.ListenerType); resp.GetVersionInfo() == second.GetVersionInfo() {
			return errors.New("not sent yet")
		}
		return nil
	})
	acked(t, x, resourcev3.ListenerType)
	if got := promtestutil.ToFloat64(rejectedRoutes.WithLabelValues(rejectServerName)); got != 0 {
		t.Errorf("rejected_routes{%s} = %v after the fix, want 0", rejectServerName, got)
	}
	for _, sni := range []string{cartSNI, paySNI, newSNI} {
		if _, ok := gw.Routes()[sni]; !ok {
			t.Errorf("route %s gone", sni)
		}
	}
}

// TestFollowXDSKeepsARouteThatTurnsBad: a route that was good and turns bad (its load
// assignment gets an endpoint that is not an IP) keeps the endpoints it had, the
// assignment is NACKed naming its cluster, and the other routes take their updates.
func TestFollowXDSKeepsARouteThatTurnsBad(t *testing.T) {
	cartSNI, _ := uniqueSNI(t.Name() + "-cart")
	paySNI, _ := uniqueSNI(t.Name() + "-pay")
	clusterOf := func(sni string) string {
		host, _, _ := xdsnames.ParseSNI(sni)
		return "outbound|8080||" + host
	}
	cart, pay := clusterOf(cartSNI), clusterOf(paySNI)
	ep := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	lds, eds := newXDSCaches()
	l := gatewayListener(t, sniChain(t, cart, cartSNI), sniChain(t, pay, paySNI))
	l.Name = xdsnames.GatewayListener
	if err := lds.UpdateResource(xdsnames.GatewayListener, l); err != nil {
		t.Fatal(err)
	}
	if err := eds.UpdateResource(cart, claFor(cart, ep("10.0.0.1:8080"))); err != nil {
		t.Fatal(err)
	}
	if err := eds.UpdateResource(pay, claFor(pay, ep("10.0.1.1:8080"))); err != nil {
		t.Fatal(err)
	}
	x := startXDS(t, "", lds, eds, nil)
	gw := followedGateway(t, x)
	testutil.Eventually(t, 10*time.Second, "both routes applied", func() error {
		return errors.Join(hasRoute(gw, cartSNI, ep("10.0.0.1:8080")), hasRoute(gw, paySNI, ep("10.0.1.1:8080")))
	})
	good := acked(t, x, resourcev3.EndpointType)

	if err := eds.UpdateResource(cart, assignment(cart, lbEP{"cart.local", 8080, corev3.HealthStatus_HEALTHY, 0})); err != nil {
		t.Fatal(err)
	}
	if err := eds.UpdateResource(pay, claFor(pay, ep("10.0.1.2:8080"))); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "pay's new endpoint applied", func() error { return hasRoute(gw, paySNI, ep("10.0.1.2:8080")) })
	_, answer := answerTo(t, x, resourcev3.EndpointType, good)
	if msg := answer.GetErrorDetail().GetMessage(); !strings.Contains(msg, cart) || !strings.Contains(msg, "not an IP") {
		t.Errorf("answer %v; want a NACK naming cluster %s", answer, cart)
	}
	if err := hasRoute(gw, cartSNI, ep("10.0.0.1:8080")); err != nil {
		t.Errorf("the route that turned bad: %v; want the endpoints it had", err)
	}
}
