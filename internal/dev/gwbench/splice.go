package gwbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

// SpliceListening starts the line the splice proxy prints on stdout for each forward
// once it listens: "splice-proxy listening <listen> <target>", in the order given.
const SpliceListening = "splice-proxy listening"

// ServeSplice is the minimal splice proxy: for each forward "listen=target" it
// accepts on listen (host:port, port 0 for any) and copies each connection to a new
// connection to target and back, with splice(2) through a pipe per direction on
// Linux, until ctx ends. It has no limits, no routing, no metrics, and allocates
// nothing per byte: the floor a user-space TCP proxy can reach.
func ServeSplice(ctx context.Context, forwards []string, out io.Writer) error {
	if len(forwards) == 0 {
		return errors.New("splice-proxy: no --forward listen=target given")
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var wg sync.WaitGroup
	for _, f := range forwards {
		listen, target, ok := strings.Cut(f, "=")
		if !ok || listen == "" || target == "" {
			return fmt.Errorf("splice-proxy: forward %q: want listen=target, e.g. 127.0.0.1:0=127.0.0.1:8080", f)
		}
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return fmt.Errorf("splice-proxy: %w", err)
		}
		lns = append(lns, ln)
		fmt.Fprintf(out, "%s %s %s\n", SpliceListening, ln.Addr(), target)
		wg.Go(func() { acceptLoop(ln, target) })
	}
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	wg.Wait()
	return nil
}

func acceptLoop(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go forward(c.(*net.TCPConn), target)
	}
}

func forward(client *net.TCPConn, target string) {
	defer client.Close()
	c, err := net.DialTimeout("tcp", target, dialTimeout)
	if err != nil {
		return
	}
	backend := c.(*net.TCPConn)
	defer backend.Close()
	var wg sync.WaitGroup
	half := func(dst, src *net.TCPConn) {
		if err := spliceCopy(dst, src); err != nil {
			// Abort both directions: the other copy returns too.
			client.Close()
			backend.Close()
			return
		}
		dst.CloseWrite() //nolint:errcheck // src ended: pass its end on
	}
	wg.Go(func() { half(backend, client) })
	half(client, backend)
	wg.Wait()
}
