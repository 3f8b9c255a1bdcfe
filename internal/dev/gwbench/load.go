package gwbench

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// dialTimeout bounds every connection attempt and ioTimeout every connection's life:
// a stuck path fails the run instead of hanging it.
const (
	dialTimeout = 5 * time.Second
	ioTimeout   = 2 * time.Minute
)

// throughput sends hello then total bytes to addr over conns connections at once,
// each half-closing and waiting for the sink's count, which must be what it sent.
// It returns the bytes moved and the wall time from the first dial to the last answer.
func throughput(addr string, hello []byte, total int64, conns int) (int64, time.Duration, error) {
	buf := make([]byte, 256<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	per := total / int64(conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns {
		wg.Go(func() { errs[i] = send(addr, hello, buf, per) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return 0, 0, err
		}
	}
	return per * int64(conns), elapsed, nil
}

func send(addr string, hello, buf []byte, n int64) error {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout)) //nolint:errcheck
	if _, err := c.Write(hello); err != nil {
		return err
	}
	for sent := int64(0); sent < n; {
		k := min(int64(len(buf)), n-sent)
		if _, err := c.Write(buf[:k]); err != nil {
			return err
		}
		sent += k
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	var b [8]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("the sink's count: %w", err)
	}
	if got, want := int64(binary.BigEndian.Uint64(b[:])), int64(len(hello))+n; got != want {
		return fmt.Errorf("the sink read %d bytes, want %d", got, want)
	}
	return nil
}

// roundTrips opens conns TLS connections to addr one after the other and makes
// n/conns round trips of size bytes on each, checking every echo; it returns every
// round trip's duration (handshakes excluded).
func roundTrips(addr string, cfg *tls.Config, n, conns, size int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	msg, got := make([]byte, size), make([]byte, size)
	for i := range conns {
		c, err := dialTLS(addr, cfg)
		if err != nil {
			return nil, err
		}
		trips := n / conns
		if i < n%conns {
			trips++
		}
		for j := range trips {
			for k := range msg {
				msg[k] = byte(j + k) // every echo differs from the one before
			}
			start := time.Now()
			if err := echo(c, msg, got); err != nil {
				c.Close()
				return nil, err
			}
			out = append(out, time.Since(start))
		}
		c.Close()
	}
	return out, nil
}

// setups opens n TLS connections to addr one after the other, each closed after its
// handshake and first round trip of size bytes, and returns each one's duration from
// the dial to the echo.
func setups(addr string, cfg *tls.Config, n, size int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	msg, got := make([]byte, size), make([]byte, size)
	for range n {
		start := time.Now()
		c, err := dialTLS(addr, cfg)
		if err != nil {
			return nil, err
		}
		err = echo(c, msg, got)
		out = append(out, time.Since(start))
		c.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func dialTLS(addr string, cfg *tls.Config) (*tls.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(ioTimeout)) //nolint:errcheck
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with %s (SNI %s): %w", addr, cfg.ServerName, err)
	}
	return c, nil
}

func echo(c net.Conn, msg, got []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if string(got) != string(msg) {
		return fmt.Errorf("echo: got other bytes than were sent")
	}
	return nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}
