// Package adsclient is a small state-of-the-world ADS client: it keeps one stream to
// an xDS server open, subscribes to resources by type and name, acknowledges what it
// receives, and hands every response to its caller. meshfed's east-west gateway uses it
// to take its configuration from its cluster's agent, as an Envoy gateway would.
//
// It reconnects with backoff and resubscribes after every reconnect; an update always
// carries the complete set of the type's subscribed resources the server sent.
package adsclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
)

// Update is one response: every resource of a type, by name.
type Update struct {
	TypeURL   string
	Resources map[string]*anypb.Any
}

// Client is an ADS client. Create it with New, start it with Run.
type Client struct {
	target string
	node   *corev3.Node
	log    logr.Logger

	mu      sync.Mutex
	subs    map[string][]string // type URL -> names
	changed chan struct{}
	updates chan Update
}

// New returns a client of the xDS server at target (host:port, insecure gRPC) that
// identifies as node.
func New(target string, node *corev3.Node, log logr.Logger) *Client {
	return &Client{target: target, node: node, log: log, subs: map[string][]string{},
		changed: make(chan struct{}, 1), updates: make(chan Update, 16)}
}

// Updates delivers every response.
func (c *Client) Updates() <-chan Update { return c.updates }

// Subscribe sets the names of a type to watch (nil: none).
func (c *Client) Subscribe(typeURL string, names []string) {
	names = slices.Sorted(slices.Values(names))
	c.mu.Lock()
	if slices.Equal(c.subs[typeURL], names) {
		c.mu.Unlock()
		return
	}
	c.subs[typeURL] = names
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Run keeps the stream open until ctx is done.
func (c *Client) Run(ctx context.Context) error {
	conn, err := grpc.NewClient(c.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("ads client: %w", err)
	}
	defer conn.Close()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := c.stream(ctx, discoveryv3.NewAggregatedDiscoveryServiceClient(conn))
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		c.log.Info("xDS stream ended; reconnecting", "server", c.target, "error", fmt.Sprint(err), "after", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	return nil
}

type typeState struct {
	version, nonce string
	sent           []string
}

func (c *Client) stream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	state := map[string]*typeState{}
	first := true
	// send is called from both goroutines; mu also serializes stream.Send, which is
	// not safe for concurrent use.
	send := func(typeURL string, names []string, ack *discoveryv3.DiscoveryResponse) error {
		mu.Lock()
		defer mu.Unlock()
		st := state[typeURL]
		if st == nil {
			st = &typeState{}
			state[typeURL] = st
		}
		if ack != nil {
			st.version, st.nonce = ack.GetVersionInfo(), ack.GetNonce()
		}
		st.sent = names
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: st.version, ResponseNonce: st.nonce}
		if first {
			req.Node, first = c.node, false
		}
		return stream.Send(req)
	}
	resubscribe := func() error {
		c.mu.Lock()
		subs := make(map[string][]string, len(c.subs))
		for t, n := range c.subs {
			subs[t] = n
		}
		c.mu.Unlock()
		for typeURL, names := range subs {
			mu.Lock()
			st := state[typeURL]
			same := st != nil && slices.Equal(st.sent, names)
			mu.Unlock()
			if same {
				continue
			}
			if err := send(typeURL, names, nil); err != nil {
				return err
			}
		}
		return nil
	}
	if err := resubscribe(); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			u := Update{TypeURL: resp.GetTypeUrl(), Resources: map[string]*anypb.Any{}}
			for _, r := range resp.GetResources() {
				u.Resources[nameOf(r)] = r
			}
			select {
			case c.updates <- u:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
			mu.Lock()
			names := state[resp.GetTypeUrl()].sent
			mu.Unlock()
			if err := send(resp.GetTypeUrl(), names, resp); err != nil {
				errc <- err
				return
			}
		}
	}()
	for {
		select {
		case err := <-errc:
			return err
		case <-c.changed:
			if err := resubscribe(); err != nil {
				return err
			}
		case <-ctx.Done():
			return errors.Join(ctx.Err())
		}
	}
}

// nameOf reads the name field every xDS resource has.
func nameOf(r *anypb.Any) string {
	m, err := r.UnmarshalNew()
	if err != nil {
		return ""
	}
	if n, ok := m.(interface{ GetName() string }); ok && n.GetName() != "" {
		return n.GetName()
	}
	if n, ok := m.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return ""
}
