package eastwest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/eastwest/internal/clienthello"
)

// conn is one client connection and, once dialed, its backend. Whatever ends it
// first (the idle watchdog, Shutdown, an error in either direction) records why and
// closes both sockets, which unblocks every goroutine using them.
type conn struct {
	client net.Conn

	mu      sync.Mutex
	backend net.Conn
	reason  string // why the connection was aborted; "" while it was not
	idle    *time.Timer
	done    bool // the tunnel ended: the idle watchdog must not re-arm

	lastActive atomic.Int64 // unix nanoseconds of the last byte sampled in the tunnel
}

// abort records reason, unless another was recorded first, and closes both sockets.
// It reports whether this call was the first.
func (c *conn) abort(reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason != "" {
		return false
	}
	c.reason = reason
	c.client.Close() //nolint:errcheck
	if c.backend != nil {
		c.backend.Close() //nolint:errcheck
	}
	return true
}

func (c *conn) abortReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// setBackend attaches the backend connection, unless the connection was aborted
// meanwhile (then the caller closes b).
func (c *conn) setBackend(b net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason != "" {
		return false
	}
	c.backend = b
	return true
}

// close releases both sockets when the handler is done.
func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	if c.idle != nil {
		c.idle.Stop()
	}
	c.client.Close() //nolint:errcheck
	if c.backend != nil {
		c.backend.Close() //nolint:errcheck
	}
}

func (c *conn) touch() { c.lastActive.Store(time.Now().UnixNano()) }

// watchIdle aborts the connection once nothing moved on it for d, checking every
// interval. Movement is what the copy loops sample and, on Linux, the kernel's byte
// counts of both sockets, which also see a transfer that a splice blocked on a slow
// receiver is making (the copy loop sees it only when the splice returns).
func (c *conn) watchIdle(d, interval time.Duration) {
	c.touch()
	moved, _ := c.socketBytes()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle = time.AfterFunc(min(interval, d), func() {
		if n, ok := c.socketBytes(); ok && n != moved {
			moved = n // only this callback touches moved, and runs once at a time
			c.touch()
		}
		quiet := time.Since(time.Unix(0, c.lastActive.Load()))
		if quiet >= d {
			c.abort(reasonIdleTimeout)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.done && c.reason == "" {
			c.idle.Reset(min(interval, d-quiet))
		}
	})
}

// socketBytes sums the kernel's byte counts of both sockets; see socketBytes.
func (c *conn) socketBytes() (uint64, bool) {
	c.mu.Lock()
	client, backend := c.client, c.backend
	c.mu.Unlock()
	a, ok1 := socketBytes(client)
	b, ok2 := socketBytes(backend)
	return a + b, ok1 && ok2
}

// serveConn handles one client connection from accept to close.
func (g *Gateway) serveConn(client net.Conn, src netip.Prefix) {
	c := &conn{client: client}
	defer func() {
		c.close()
		g.release(src)
		g.conns.Done()
	}()
	stop := context.AfterFunc(g.hardCtx, func() { c.abort(reasonShutdown) })
	defer stop()
	// One connection's bug must not take the others down with the process.
	defer func() {
		if r := recover(); r != nil {
			countFailure("", reasonInternal)
			g.log.Error(fmt.Errorf("panic: %v", r), "Connection handler panicked", "remote", client.RemoteAddr().String())
		}
	}()

	start := time.Now()
	client.SetReadDeadline(start.Add(g.opts.PeekTimeout)) //nolint:errcheck
	raw, hello, err := clienthello.Read(client, g.opts.MaxClientHelloBytes)
	if err != nil {
		reason := peekFailure(err)
		if r := c.abortReason(); r != "" {
			reason = r
		}
		g.fail(c, nil, reason, "error", err.Error(), "bytes", len(raw))
		return
	}
	peekDuration.Observe(time.Since(start).Seconds())
	if hello.ServerName == "" {
		g.fail(c, nil, reasonNoSNI)
		return
	}
	rt := g.routes.Load().routes[hello.ServerName]
	if rt == nil {
		// The name passed the parser's character check, so it is safe to log; it is
		// never used as a metric label.
		g.fail(c, nil, reasonUnknownSNI, "sni", hello.ServerName)
		return
	}
	if len(rt.endpoints) == 0 {
		g.fail(c, rt, reasonNoEndpoint)
		return
	}
	backend, ep, reason := g.dial(c, rt)
	if backend == nil {
		g.fail(c, rt, reason)
		return
	}
	defer ep.active.Add(-1)
	// Replay the ClientHello: the backend's TLS server sees exactly what the client
	// sent. The socket buffer takes it at once unless the backend is already gone.
	backend.SetWriteDeadline(time.Now().Add(g.opts.DialTimeout)) //nolint:errcheck
	if _, err := backend.Write(raw); err != nil {
		errorsTotal.WithLabelValues(reasonDialError).Inc()
		g.fail(c, rt, reasonDialFailed, "endpoint", ep.addr.String(), "error", err.Error())
		return
	}
	backend.SetWriteDeadline(time.Time{}) //nolint:errcheck
	client.SetReadDeadline(time.Time{})   //nolint:errcheck

	rt.connsOK.Inc()
	rt.bytesToBackend.Add(float64(len(raw)))
	rt.active.Inc()
	defer rt.active.Dec()
	g.log.V(2).Info("Tunnel established", "service", rt.service, "remote", client.RemoteAddr().String(), "endpoint", ep.addr.String())
	g.tunnel(c, rt, backend)
}

// fail counts and logs a connection that ends before its tunnel; rt is nil when it
// matched no route.
func (g *Gateway) fail(c *conn, rt *route, reason string, kv ...any) {
	service := ""
	if rt != nil {
		service = rt.service
		kv = append(kv, "service", service)
	}
	countFailure(service, reason)
	if g.log.V(1).Enabled() {
		g.log.V(1).Info("Connection closed before routing", append(kv, "reason", reason, "remote", c.client.RemoteAddr().String())...)
	}
}

// peekFailure maps an error of clienthello.Read to its reason.
func peekFailure(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return reasonNoData
	case errors.Is(err, io.ErrUnexpectedEOF):
		return reasonTruncated
	case errors.Is(err, clienthello.ErrNotTLS):
		return reasonNotTLS
	case errors.Is(err, clienthello.ErrTooLarge):
		return reasonTooLarge
	case errors.Is(err, clienthello.ErrMalformed):
		return reasonMalformed
	case errors.Is(err, os.ErrDeadlineExceeded):
		return reasonPeekTimeout
	default:
		return reasonReadError
	}
}

// dial connects to up to DialAttempts distinct endpoints of rt, least-loaded first.
// On success the endpoint stays reserved (the caller releases it); on failure it
// returns the connection's result.
func (g *Gateway) dial(c *conn, rt *route) (net.Conn, *endpoint, string) {
	var tried []*endpoint
	for range g.opts.DialAttempts {
		ep := rt.pick(tried)
		if ep == nil {
			break
		}
		tried = append(tried, ep)
		b, err := g.dialer.DialContext(g.hardCtx, "tcp", ep.addr.String())
		if err == nil {
			if !c.setBackend(b) {
				b.Close() //nolint:errcheck
				ep.active.Add(-1)
				return nil, nil, c.abortReason()
			}
			return b, ep, ""
		}
		ep.active.Add(-1)
		if r := c.abortReason(); r != "" {
			return nil, nil, r
		}
		if g.hardCtx.Err() != nil {
			return nil, nil, reasonShutdown
		}
		reason := reasonDialError
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			reason = reasonDialTimeout
		}
		errorsTotal.WithLabelValues(reason).Inc()
		g.log.V(1).Info("Dial failed", "service", rt.service, "endpoint", ep.addr.String(), "reason", reason, "error", err.Error())
	}
	return nil, nil, reasonDialFailed
}

// tunnel copies bytes both ways until both directions have ended (each passes its
// end on as a half-close) or the connection is aborted.
func (g *Gateway) tunnel(c *conn, rt *route, backend net.Conn) {
	c.watchIdle(g.opts.IdleTimeout, g.sample)
	var wg sync.WaitGroup
	wg.Go(func() { g.pipe(c, backend, c.client, rt.bytesToBackend) })
	g.pipe(c, c.client, backend, rt.bytesToClient)
	wg.Wait()
	if reason := c.abortReason(); reason != "" {
		errorsTotal.WithLabelValues(reason).Inc()
		g.log.V(1).Info("Tunnel aborted", "service", rt.service, "reason", reason, "remote", c.client.RemoteAddr().String())
	}
}

// pipe copies src to dst until src ends, then half-closes dst so that the other side
// sees the end too while the opposite direction goes on.
//
// Between two *net.TCPConn on Linux the bytes move with splice(2) through a kernel
// pipe, never through user space (spliceCopy). Elsewhere they go through copy.
func (g *Gateway) pipe(c *conn, dst, src net.Conn, counter prometheus.Counter) {
	spliced, err := g.spliceCopy(c, dst, src, counter)
	if !spliced {
		err = g.copy(c, dst, src, counter)
	}
	if err != nil {
		c.abort(reasonStreamError) // the first reason recorded wins
		return
	}
	// src sent its FIN.
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite() //nolint:errcheck // dst may be gone already; the other direction will see it
		return
	}
	c.abort(reasonStreamError) // cannot half-close: end both directions
}

// copy copies src to dst with io.Copy until src's end (nil) or an error. To sample
// activity and update the byte counters while a long transfer runs, the copy is
// bounded by a read deadline on src every sample interval; a read that times out has
// moved nothing, so resuming the copy loses nothing. dst gets no deadline: a write
// that timed out could drop bytes already taken from src.
func (g *Gateway) copy(c *conn, dst, src net.Conn, counter prometheus.Counter) error {
	for {
		src.SetReadDeadline(time.Now().Add(g.sample)) //nolint:errcheck
		n, err := io.Copy(dst, src)
		if n > 0 {
			counter.Add(float64(n))
			c.touch()
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded) && c.abortReason() == "":
			continue
		default:
			return err
		}
	}
}
