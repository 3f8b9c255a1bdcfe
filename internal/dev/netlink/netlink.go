// Package netlink is a network link that tests and the sandbox can cut: a TCP proxy on
// loopback in front of one address. Cut partitions it as a real network fault would:
// established connections stop carrying anything (no reset: the peers find out by
// their own timeouts and keepalives), and new connections are accepted but go
// nowhere. Heal closes what the cut held and carries new connections again.
//
// Traffic stays on this machine: between loopback addresses, or (Listen) from a test
// host's network namespace to loopback.
package netlink

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Link proxies connections to one target until Close.
type Link struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{} // every open connection, both sides
	wg    sync.WaitGroup
}

// New listens on a free loopback port and forwards to target (host:port).
func New(target string) (*Link, error) { return Listen("127.0.0.1:0", target) }

// Listen is New listening on addr (host:port; port 0 for a free one), for a link
// that another network namespace reaches, such as a test host's side of its veth.
func Listen(addr, target string) (*Link, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &Link{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr is where to connect instead of the target.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Target is the address the link forwards to.
func (l *Link) Target() string { return l.target }

// Cut partitions the link.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
}

// Heal ends a partition: connections the cut held are closed (their peers reconnect),
// new ones are carried.
func (l *Link) Heal() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.cut {
		return
	}
	l.cut = false
	for c := range l.conns {
		c.Close()
	}
}

// IsCut reports whether the link is cut.
func (l *Link) IsCut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cut
}

// Close stops the link and closes every connection.
func (l *Link) Close() error {
	err := l.ln.Close()
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		l.conns[c] = struct{}{}
		cut := l.cut
		l.mu.Unlock()
		if cut {
			continue // held, carrying nothing, until Heal or Close
		}
		l.wg.Add(1)
		go l.forward(c)
	}
}

func (l *Link) forward(c net.Conn) {
	defer l.wg.Done()
	defer l.drop(c)
	up, err := net.Dial("tcp", l.target)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.conns[up] = struct{}{}
	l.mu.Unlock()
	defer l.drop(up)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		l.copy(dst, src)
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
}

// copy carries src to dst while the link is not cut; once it is, it reads and
// discards, as a partitioned network would lose the packets.
func (l *Link) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.IsCut() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite() //nolint:errcheck // half-close, best effort
			}
			return
		}
	}
}

func (l *Link) drop(c net.Conn) {
	c.Close()
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}
