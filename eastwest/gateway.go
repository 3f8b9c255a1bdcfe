package eastwest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrClosed is returned by Serve and ListenAndServe once Shutdown or Close was called.
var ErrClosed = errors.New("eastwest: gateway closed")

// Gateway is the east-west gateway's data plane: an SNI-routing TCP proxy that never
// terminates TLS. Create it with New, give it routes with SetRoutes, serve with Serve
// or ListenAndServe, stop it with Shutdown. All methods are safe for concurrent use.
type Gateway struct {
	opts   Options
	log    logr.Logger
	dialer net.Dialer
	sample time.Duration

	routes    atomic.Pointer[table]
	routesMu  sync.Mutex // serializes SetRoutes
	routesSet atomic.Bool

	open     atomic.Int64 // client connections open, what MaxConnections bounds
	draining atomic.Bool
	sources  *sources  // open connections per source, what MaxConnectionsPerSource bounds
	fds      *fdBudget // descriptors held by connections and pipes, what MaxFDs bounds
	pipes    *pipePool
	// lastBudgetLog is when a refusal for the fd budget was last logged (unix ns).
	lastBudgetLog atomic.Int64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	closed    bool // Shutdown was called: no new Serve, no new connections

	serving sync.WaitGroup // Serve loops
	conns   sync.WaitGroup // connection handlers; Add only from a Serve loop

	// hardCtx is cancelled when Shutdown gives up waiting: every connection closes.
	hardCtx  context.Context
	hardStop context.CancelFunc
}

// New returns a Gateway with no routes: until SetRoutes is called, every connection
// is closed as unknown_sni and Ready reports not ready.
func New(opts Options) (*Gateway, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	g := &Gateway{
		opts:      opts,
		log:       opts.Logger,
		sample:    opts.sampleInterval(),
		listeners: map[net.Listener]struct{}{},
	}
	// The dialer's own timeout is per attempt; keep-alive detects endpoints that
	// vanished without a reset (a node that died), as on accepted connections.
	g.dialer = net.Dialer{Timeout: opts.DialTimeout}
	g.sources = newSources(opts.MaxConnectionsPerSource)
	g.fds = &fdBudget{max: int64(opts.MaxFDs)}
	g.pipes = newPipePool(g.fds)
	fdBudgetGauge.Set(float64(opts.MaxFDs))
	g.hardCtx, g.hardStop = context.WithCancel(context.Background())
	g.routes.Store(&table{routes: map[string]*route{}})
	return g, nil
}

// SetRoutes replaces the route table, atomically: connections accepted after it
// returns use r; connections already routed keep their endpoint. r is copied; names
// are lower-cased and endpoint lists deduplicated. On error the table is unchanged.
// Open-connection counts of endpoints present in both tables carry over, so
// least-connections balancing is not reset by updates.
func (g *Gateway) SetRoutes(r Routes) error {
	g.routesMu.Lock()
	defer g.routesMu.Unlock()
	t, err := buildTable(r, g.routes.Load())
	if err != nil {
		return err
	}
	g.routes.Store(t)
	g.routesSet.Store(true)
	routesConfigured.Set(float64(len(t.routes)))
	g.log.V(1).Info("Routes updated", "serverNames", len(t.routes))
	return nil
}

// Routes returns a copy of the route table in use, names lower-cased.
func (g *Gateway) Routes() Routes { return g.routes.Load().snapshot() }

// ListenAndServe listens on Options.Address and serves until Shutdown or Close; it
// then returns ErrClosed.
func (g *Gateway) ListenAndServe() error {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", g.opts.Address)
	if err != nil {
		return fmt.Errorf("eastwest: listen: %w", err)
	}
	return g.Serve(ln)
}

// Serve accepts connections on ln and proxies each in its own goroutine, until
// Shutdown or Close (then it returns ErrClosed) or until ln fails for good. It
// closes ln when it returns. Splicing (zero-copy on Linux) needs ln to yield
// *net.TCPConn; other connections work through a user-space copy.
func (g *Gateway) Serve(ln net.Listener) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		ln.Close() //nolint:errcheck
		return ErrClosed
	}
	g.listeners[ln] = struct{}{}
	g.serving.Add(1)
	g.mu.Unlock()
	defer g.serving.Done()
	defer func() {
		g.mu.Lock()
		delete(g.listeners, ln)
		g.mu.Unlock()
		ln.Close() //nolint:errcheck
	}()

	g.log.Info("Gateway listening", "address", ln.Addr().String())
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if g.isClosed() {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors, a connection aborted in the backlog: keep
			// serving, slower, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			errorsTotal.WithLabelValues(reasonAcceptError).Inc()
			g.log.Error(err, "Accept failed; retrying", "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		src, ok := g.admit(c)
		if !ok {
			c.Close() //nolint:errcheck
			continue
		}
		openConnections.Inc()
		g.conns.Add(1)
		go g.serveConn(c, src)
	}
}

// admit counts an accepted connection against MaxConnections, its source's
// MaxConnectionsPerSource and the descriptor budget, or refuses it (counted and
// logged; the caller closes it) if any is spent. What admit took, release returns.
func (g *Gateway) admit(c net.Conn) (netip.Prefix, bool) {
	remote := c.RemoteAddr().String()
	if n := g.open.Add(1); n > int64(g.opts.MaxConnections) {
		g.open.Add(-1)
		countFailure("", reasonOverLimit)
		g.log.V(1).Info("Connection refused: too many connections", "remote", remote, "max", g.opts.MaxConnections)
		return netip.Prefix{}, false
	}
	src, known := sourceKey(c.RemoteAddr())
	if known {
		if ok, first := g.sources.acquire(src); !ok {
			g.open.Add(-1)
			countFailure("", reasonSourceLimit)
			if first {
				// Once per flood: the source is logged again only after all its
				// connections have closed.
				g.log.Info("Source over its connection limit; refusing its new connections", "source", src.String(), "max", g.opts.MaxConnectionsPerSource)
			} else {
				g.log.V(1).Info("Connection refused: too many connections from its source", "remote", remote, "max", g.opts.MaxConnectionsPerSource)
			}
			return netip.Prefix{}, false
		}
	}
	// Idle pipes are a cache: connections come first.
	if !g.fds.take(fdsPerConnection) && (!g.pipes.evict() || !g.fds.take(fdsPerConnection)) {
		g.open.Add(-1)
		if known {
			g.sources.release(src)
		}
		countFailure("", reasonFDBudget)
		if now := time.Now().UnixNano(); now-g.lastBudgetLog.Load() > int64(10*time.Second) {
			g.lastBudgetLog.Store(now)
			g.log.Info("File descriptor budget spent; refusing new connections", "budget", g.opts.MaxFDs, "open", g.open.Load())
		} else {
			g.log.V(1).Info("Connection refused: file descriptor budget spent", "remote", remote, "budget", g.opts.MaxFDs)
		}
		return netip.Prefix{}, false
	}
	return src, true
}

// release returns what admit took for a connection from src.
func (g *Gateway) release(src netip.Prefix) {
	g.fds.give(fdsPerConnection)
	if src.IsValid() {
		g.sources.release(src)
	}
	openConnections.Dec()
	g.open.Add(-1)
}

func (g *Gateway) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// BeginDrain makes Ready fail (so /readyz answers 503 and load balancers stop sending
// new connections) while the gateway keeps accepting. Call Shutdown once the load
// balancers have had time to notice. Shutdown calls it too.
func (g *Gateway) BeginDrain() {
	if !g.draining.Swap(true) {
		draining.Set(1)
		g.log.Info("Gateway draining", "open", g.open.Load())
	}
}

// Shutdown stops accepting (closing every listener Serve was given), then waits for
// open connections to end on their own: established tunnels until both sides close
// them, connections still sending a ClientHello until they are routed and end too.
// If ctx ends first, it closes every remaining connection, waits for their handlers,
// and returns ctx's error; otherwise nil. Readiness fails from the first call on.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.BeginDrain()
	g.mu.Lock()
	g.closed = true
	for ln := range g.listeners {
		ln.Close() //nolint:errcheck
	}
	g.mu.Unlock()
	// After the Serve loops have returned nothing adds to conns, so waiting on it
	// cannot race with an Add.
	g.serving.Wait()

	done := make(chan struct{})
	go func() {
		g.conns.Wait()
		close(done)
	}()
	defer g.pipes.close() // every tunnel has ended: no pipe is in use
	select {
	case <-done:
		g.log.Info("Gateway drained")
		return nil
	default:
	}
	select {
	case <-done:
		g.log.Info("Gateway drained")
		return nil
	case <-ctx.Done():
		left := g.open.Load()
		g.hardStop()
		<-done
		g.log.Info("Gateway drain cut short; closed the remaining connections", "closed", left)
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once.
func (g *Gateway) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Ready reports whether the gateway should receive new connections: nil when it is
// serving at least one listener, has been given routes, and is not draining.
func (g *Gateway) Ready() error {
	if g.draining.Load() {
		return errors.New("draining")
	}
	if !g.routesSet.Load() {
		return errors.New("no routes yet")
	}
	g.mu.Lock()
	n := len(g.listeners)
	g.mu.Unlock()
	if n == 0 {
		return errors.New("not listening")
	}
	return nil
}

// Handler serves /healthz (always 200 while the process runs), /readyz (Ready:
// 200, or 503 with the reason) and /metrics (what metrics gathers: the registry the
// process registered this package's collectors in with RegisterMetrics; nil serves
// no /metrics), for the gateway's health and metrics port.
func (g *Gateway) Handler(metrics prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok")) //nolint:errcheck
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := g.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok")) //nolint:errcheck
	})
	if metrics != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	}
	return mux
}
