package adsclient

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Update is one response of a subscribed type: every resource of the type the server
// sent, in its order.
type Update struct {
	TypeURL   string
	Version   string
	Resources []*anypb.Any
}

// Handler applies an update. Returning nil ACKs it; returning an error NACKs it with
// the error's message, and the caller must then still be in the state it was in
// before the update. It is called on Run's goroutine, one update at a time; it may
// call Subscribe.
type Handler func(ctx context.Context, u Update) error

// Reconnection backoff: the first retry after 100ms, doubling up to 10s; a stream
// that lived longer than resetAfter starts the sequence over.
const (
	initialBackoff = 100 * time.Millisecond
	maxBackoff     = 10 * time.Second
	resetAfter     = 10 * time.Second
)

// NACK pacing: a server that answers a NACK by sending the refused configuration
// again at once (go-control-plane's SnapshotCache does, since the NACK carries an
// older version) would otherwise spin with the client. The first NACK of a version
// goes out at once; when the same version is refused again, the NACK waits
// firstNACKDelay, doubling up to maxNACKDelay, until a response of the type is
// accepted or another version comes. A new version is answered at once, refused or
// not: a server waits for the answer before it sends the next version, so delaying
// it would delay every later update of the type.
const (
	firstNACKDelay = 500 * time.Millisecond
	maxNACKDelay   = 30 * time.Second
)

// nackDelay is how long the refusals-th refusal in a row waits before its NACK.
func nackDelay(refusals int) time.Duration {
	if refusals <= 1 {
		return 0
	}
	return min(firstNACKDelay<<min(refusals-2, 16), maxNACKDelay)
}

func newBackoff() wait.Backoff {
	return wait.Backoff{Duration: initialBackoff, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: maxBackoff}
}

// Client is an ADS client. Create it with New, start it with Run.
type Client struct {
	target string
	dial   []grpc.DialOption
	node   *corev3.Node
	handle Handler
	log    logr.Logger

	mu      sync.Mutex
	subs    map[string][]string // type URL -> names, sorted
	changed chan struct{}       // a subscription changed since the stream last looked
}

// New returns a client of the xDS server at target (host:port) that identifies as
// node and hands every response of a subscribed type to handle. It dials with dial
// (e.g. grpc.WithTransportCredentials for an authenticating server); without
// transport credentials among them, plaintext.
func New(target string, node *corev3.Node, handle Handler, log logr.Logger, dial ...grpc.DialOption) *Client {
	return &Client{target: target, dial: dial, node: node, handle: handle, log: log,
		subs: map[string][]string{}, changed: make(chan struct{}, 1)}
}

// Subscribe sets the names of a type to watch (nil: none; a type never given names
// is not subscribed to). It never blocks: the stream sends the new subscription when
// it next can.
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

// Run keeps a stream open, reconnecting as needed, until ctx is done; then it
// returns nil.
func (c *Client) Run(ctx context.Context) error {
	// gRPC's own reconnect backoff grows to two minutes: a gateway that starts before
	// its workload certificate exists (every handshake refused) would then wait that
	// long once the certificate is there. One local connection is cheap to retry.
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: initialBackoff, Multiplier: 2,
			Jitter: 0.1, MaxDelay: maxBackoff}, MinConnectTimeout: 5 * time.Second})}
	conn, err := grpc.NewClient(c.target, append(opts, c.dial...)...)
	if err != nil {
		return fmt.Errorf("ads client: %w", err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	backoff := newBackoff()
	for ctx.Err() == nil {
		start := time.Now()
		err := c.stream(ctx, ads)
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > resetAfter {
			backoff = newBackoff()
		}
		after := backoff.Step()
		c.log.Info("xDS stream ended; reconnecting", "server", c.target, "error", fmt.Sprint(err), "after", after)
		t := time.NewTimer(after)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return nil
}

// typeState is what one stream knows of one type.
type typeState struct {
	version string   // of the last response the Handler accepted
	nonce   string   // of the last response received
	sent    []string // names of the last request

	refused  string           // version of the last response refused
	refusals int              // responses of that version refused in a row
	nack     *statuspb.Status // a NACK waiting for nackDue; nil when none
	nackDue  time.Time
}

// session is one stream's state. Only the goroutine running stream touches it.
type session struct {
	stream    discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	types     map[string]*typeState
	nodeSent  bool
	localNode *corev3.Node
}

// send sends a request for st, with the node on the stream's first request.
func (s *session) send(typeURL string, st *typeState, errorDetail *statuspb.Status) error {
	req := &discoveryv3.DiscoveryRequest{
		TypeUrl: typeURL, ResourceNames: st.sent, VersionInfo: st.version, ResponseNonce: st.nonce,
		ErrorDetail: errorDetail,
	}
	if !s.nodeSent {
		req.Node, s.nodeSent = s.localNode, true
	}
	return s.stream.Send(req)
}

func (c *Client) stream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	s := &session{stream: stream, types: map[string]*typeState{}, localNode: c.node}

	// The receiver only receives; handling, answering and subscribing happen below,
	// on one goroutine, so that every response is answered in order and requests are
	// never sent concurrently.
	responses := make(chan *discoveryv3.DiscoveryResponse)
	errc := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case responses <- resp:
			case <-ctx.Done():
				return
			}
		}
	}()

	if err := c.resubscribe(s); err != nil {
		return err
	}
	nackTimer := time.NewTimer(time.Hour)
	defer nackTimer.Stop()
	for {
		armNACKs(s, nackTimer)
		select {
		case <-nackTimer.C:
			if err := sendDueNACKs(s); err != nil {
				return err
			}
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-c.changed:
			if err := c.resubscribe(s); err != nil {
				return err
			}
		case resp := <-responses:
			if err := c.answer(ctx, s, resp); err != nil {
				return err
			}
		}
	}
}

// resubscribe sends a request for every type whose names differ from what the
// stream last asked for.
func (c *Client) resubscribe(s *session) error {
	c.mu.Lock()
	subs := maps.Clone(c.subs)
	c.mu.Unlock()
	for _, typeURL := range slices.Sorted(maps.Keys(subs)) {
		names := subs[typeURL]
		st := s.types[typeURL]
		if st != nil && slices.Equal(st.sent, names) {
			continue
		}
		if st == nil {
			st = &typeState{}
			s.types[typeURL] = st
		}
		st.sent = names
		if err := s.send(typeURL, st, nil); err != nil {
			return fmt.Errorf("subscribe to %s: %w", typeURL, err)
		}
	}
	return nil
}

// answer hands resp to the Handler and ACKs or NACKs it by the result.
func (c *Client) answer(ctx context.Context, s *session, resp *discoveryv3.DiscoveryResponse) error {
	typeURL := resp.GetTypeUrl()
	st := s.types[typeURL]
	if st == nil {
		c.log.Info("Ignoring an xDS response of a type not subscribed", "typeURL", typeURL,
			"version", resp.GetVersionInfo(), "nonce", resp.GetNonce())
		return nil
	}
	err := c.handle(ctx, Update{TypeURL: typeURL, Version: resp.GetVersionInfo(), Resources: resp.GetResources()})
	if ctx.Err() != nil {
		return errors.Join(ctx.Err(), err)
	}
	st.nonce = resp.GetNonce()
	if err != nil {
		if st.refusals == 0 || resp.GetVersionInfo() != st.refused {
			st.refused, st.refusals = resp.GetVersionInfo(), 0
		}
		st.refusals++
		delay := nackDelay(st.refusals)
		c.log.Error(err, "xDS response rejected (NACK)", "typeURL", typeURL,
			"version", resp.GetVersionInfo(), "nonce", resp.GetNonce(), "keptVersion", st.version, "nackAfter", delay)
		status := &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		if delay == 0 {
			st.nack = nil // answers this response; a NACK still waiting was for an older one
			return s.send(typeURL, st, status)
		}
		st.nack, st.nackDue = status, time.Now().Add(delay)
		return nil
	}
	st.refused, st.refusals, st.nack = "", 0, nil
	st.version = resp.GetVersionInfo()
	c.log.V(1).Info("xDS response accepted (ACK)", "typeURL", typeURL, "version", st.version, "nonce", st.nonce)
	return s.send(typeURL, st, nil)
}

// armNACKs sets t to fire when the earliest paced NACK is due (or not at all).
func armNACKs(s *session, t *time.Timer) {
	t.Stop()
	var due time.Time
	for _, st := range s.types {
		if st.nack != nil && (due.IsZero() || st.nackDue.Before(due)) {
			due = st.nackDue
		}
	}
	if !due.IsZero() {
		t.Reset(time.Until(due))
	}
}

// sendDueNACKs sends every paced NACK whose time has come.
func sendDueNACKs(s *session) error {
	now := time.Now()
	for _, typeURL := range slices.Sorted(maps.Keys(s.types)) {
		st := s.types[typeURL]
		if st.nack == nil || st.nackDue.After(now) {
			continue
		}
		nack := st.nack
		st.nack = nil
		if err := s.send(typeURL, st, nack); err != nil {
			return err
		}
	}
	return nil
}
