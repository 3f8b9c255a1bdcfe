package netlink

import (
	"bufio"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					c.Write(append(s.Bytes(), '\n')) //nolint:errcheck
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, within time.Duration) error {
	c.SetDeadline(time.Now().Add(within)) //nolint:errcheck
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("garbled: " + line)
	}
	return nil
}

func TestCutAndHeal(t *testing.T) {
	l, err := New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, 10*time.Second); err != nil {
		t.Fatalf("through the link: %v", err)
	}
	l.Cut()
	// Nothing gets through; a timeout, not a reset, is how the peer finds out.
	if err := roundTrip(c, 200*time.Millisecond); err == nil {
		t.Fatal("a cut link carried a round trip")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("a cut link failed with %v, want a timeout", err)
	}
	held, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := roundTrip(held, 200*time.Millisecond); err == nil {
		t.Fatal("a new connection over a cut link carried a round trip")
	}
	l.Heal()
	testutil.Eventually(t, 10*time.Second, "a new connection to work after Heal", func() error {
		c, err := net.Dial("tcp", l.Addr())
		if err != nil {
			return err
		}
		defer c.Close()
		return roundTrip(c, time.Second)
	})
}
