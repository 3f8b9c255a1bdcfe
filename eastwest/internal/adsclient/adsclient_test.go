package adsclient

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// TestNACKsArePaced runs the client against go-control-plane's SnapshotCache, which
// answers a NACK (it carries the older, accepted version) by sending the refused
// snapshot again at once. A handler that keeps refusing must not make the pair spin:
// the first NACK goes out at once, the ones after it wait.
func TestNACKsArePaced(t *testing.T) {
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	snap, err := cachev3.NewSnapshot("v1", map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: {&listenerv3.Listener{Name: "l"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.SetSnapshot(context.Background(), "gw", snap); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		nacks []time.Time
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := serverv3.NewServer(ctx, cache, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			if req.GetErrorDetail() != nil {
				mu.Lock()
				nacks = append(nacks, time.Now())
				mu.Unlock()
			}
			return nil
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
	go g.Serve(ln) //nolint:errcheck // ends with Stop
	t.Cleanup(g.Stop)

	c := New(ln.Addr().String(), &corev3.Node{Id: "gw"}, func(context.Context, Update) error {
		return errors.New("refused")
	}, logr.Discard())
	c.Subscribe(resourcev3.ListenerType, []string{"l"})
	testutil.Run(t, "ads client", c.Run)

	testutil.Eventually(t, time.Minute, "three NACKs", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(nacks) < 3 {
			return errors.New("fewer than three NACKs")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if gap := nacks[2].Sub(nacks[0]); gap < firstNACKDelay {
		t.Fatalf("three NACKs within %v: the client and the server spin on a refused configuration", gap)
	}
}

func TestNACKDelay(t *testing.T) {
	want := []time.Duration{0, 0, firstNACKDelay, 2 * firstNACKDelay, 4 * firstNACKDelay}
	for refusals, d := range want {
		if got := nackDelay(refusals); got != d {
			t.Errorf("nackDelay(%d) = %v, want %v", refusals, got, d)
		}
	}
	if got := nackDelay(1000); got != maxNACKDelay {
		t.Errorf("nackDelay(1000) = %v, want the cap %v", got, maxNACKDelay)
	}
}

// TestNewVersionsAreAnsweredAtOnce: pacing holds back the NACKs of a version sent
// again, never the first answer to a new version. A server sends nothing more of a
// type until the last response is answered, so a refused route that stays in every
// version (the gateway NACKs each) must not delay each update more than the last.
func TestNewVersionsAreAnsweredAtOnce(t *testing.T) {
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	setVersion := func(v string) {
		snap, err := cachev3.NewSnapshot(v, map[resourcev3.Type][]types.Resource{
			resourcev3.ListenerType: {&listenerv3.Listener{Name: "l"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := cache.SetSnapshot(context.Background(), "gw", snap); err != nil {
			t.Fatal(err)
		}
	}
	setVersion("v1")
	var (
		mu     sync.Mutex
		sentAt = map[string]time.Time{} // nonce -> when the response went out
		byNonc = map[string]string{}    // nonce -> version
		gaps   = map[string]time.Duration{}
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := serverv3.NewServer(ctx, cache, serverv3.CallbackFuncs{
		StreamResponseFunc: func(_ context.Context, _ int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			mu.Lock()
			sentAt[resp.GetNonce()], byNonc[resp.GetNonce()] = time.Now(), resp.GetVersionInfo()
			mu.Unlock()
		},
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			if req.GetErrorDetail() == nil {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			v := byNonc[req.GetResponseNonce()]
			if _, seen := gaps[v]; !seen {
				gaps[v] = time.Since(sentAt[req.GetResponseNonce()])
			}
			return nil
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
	go g.Serve(ln) //nolint:errcheck // ends with Stop
	t.Cleanup(g.Stop)

	c := New(ln.Addr().String(), &corev3.Node{Id: "gw"}, func(context.Context, Update) error {
		return errors.New("refused")
	}, logr.Discard())
	c.Subscribe(resourcev3.ListenerType, []string{"l"})
	testutil.Run(t, "ads client", c.Run)

	versions := []string{"v1", "v2", "v3", "v4", "v5"}
	for i, v := range versions {
		if i > 0 {
			setVersion(v)
		}
		testutil.Eventually(t, time.Minute, "a NACK of "+v, func() error {
			mu.Lock()
			defer mu.Unlock()
			if _, ok := gaps[v]; !ok {
				return errors.New("not yet")
			}
			return nil
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, v := range versions {
		// The old pacing delayed the k-th refused version by 0.5s·2^(k-2).
		if gaps[v] >= firstNACKDelay {
			t.Errorf("the first NACK of %s went out %v after it was sent; want at once", v, gaps[v])
		}
	}
}
