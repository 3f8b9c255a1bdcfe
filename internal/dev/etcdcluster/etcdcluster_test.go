package etcdcluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
)

// TestCluster starts three members, checks that they demand client certificates from
// their CA, kills a follower and then the leader under writes, restarts both, and
// finds every write on every member; Stop leaves no process behind.
func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if len(c.Endpoints()) != 3 {
		t.Fatalf("endpoints %v", c.Endpoints())
	}

	t.Run("client certificates required", func(t *testing.T) {
		addr := strings.TrimPrefix(c.Members[0].ClientURL, "https://")
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // probing the server
		if err == nil {
			// TLS 1.3 reports a missing client certificate on the first read.
			conn.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("a client without a certificate: %v, want a certificate error", err)
		}
		foreign, err := pki.NewCA("foreign", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, key, err := foreign.Issue(pki.ClientTemplate(RootUser), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cli, err := etcdconn.New(ctx, etcdconn.Credentials{Endpoints: c.Endpoints(), CA: c.creds.CA, Cert: cert, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		defer rcancel()
		if _, err := cli.Get(rctx, "x"); err == nil {
			t.Error("a client certificate from a foreign CA was accepted")
		}
	})

	cli, err := c.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	n := 0
	put := func() error {
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		_, err := cli.Put(wctx, fmt.Sprintf("k%03d", n), "v")
		if err == nil {
			n++
		}
		return err
	}
	writes := func(what string) {
		t.Helper()
		for want := n + 5; n < want; {
			testutil.Eventually(t, 30*time.Second, "a write "+what, put)
		}
	}
	writes("with every member up")

	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	c.Kill(follower)
	if c.Running(follower) {
		t.Fatal("killed member still running")
	}
	writes("with a follower down")
	if err := c.Restart(ctx, follower); err != nil {
		t.Fatal(err)
	}

	c.Kill(leader)
	testutil.Eventually(t, 30*time.Second, "a new leader", func() error {
		l, err := c.Leader(ctx)
		if err == nil && l == leader {
			return fmt.Errorf("%d still leads", l)
		}
		return err
	})
	writes("with the old leader down")
	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "every member holds every write", func() error {
		statuses, err := c.Statuses(ctx)
		if err != nil {
			return err
		}
		for _, s := range statuses {
			if s.Revision != statuses[0].Revision {
				return fmt.Errorf("revisions %+v", statuses)
			}
		}
		resp, err := cli.Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if int(resp.Count) != n {
			return fmt.Errorf("%d keys, want %d", resp.Count, n)
		}
		return nil
	})

	pids := []int{}
	for _, m := range c.Members {
		pids = append(pids, m.process.Pid())
	}
	c.Stop()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("etcd pid %d outlived Stop", pid)
		}
	}
}
