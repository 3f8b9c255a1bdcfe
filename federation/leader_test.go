package federation

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestLeaderElectionRefusedWithEmbeddedEtcd(t *testing.T) {
	opts := Options{KubeConfig: &rest.Config{Host: "https://127.0.0.1:1"}, DataDir: t.TempDir(), LeaderElection: true}
	// Run refuses before it starts anything: no etcd, no API server contacted.
	err := Run(context.Background(), opts)
	if !errors.Is(err, ErrLeaderElectionNeedsExternalEtcd) {
		t.Fatalf("Run with --leader-elect and the embedded etcd: %v, want ErrLeaderElectionNeedsExternalEtcd", err)
	}
	// The message tells the operator what to do.
	for _, want := range []string{"--etcd-endpoints", "3 or 5 members", "--etcd-client-ca-cert-file", "split brain"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestLeaderElectionDefaults(t *testing.T) {
	for name, tc := range map[string]struct {
		opts    Options
		wantErr string
		check   func(*testing.T, Options)
	}{
		"no election, embedded etcd": {opts: Options{}},
		"external etcd": {
			opts: Options{LeaderElection: true, EtcdEndpoints: []string{"https://a:2379", "https://b:2379", "https://c:2379"}},
			check: func(t *testing.T, o Options) {
				if o.LeaseDuration != DefaultLeaseDuration || o.RenewDeadline != DefaultRenewDeadline || o.RetryPeriod != DefaultRetryPeriod {
					t.Errorf("timings %s/%s/%s, want the defaults", o.LeaseDuration, o.RenewDeadline, o.RetryPeriod)
				}
				if o.LeaderElectionIdentity == "" {
					t.Error("no identity")
				}
				// Agents are given every member.
				if len(o.EtcdAdvertiseURLs) != 3 {
					t.Errorf("advertised %v, want every member", o.EtcdAdvertiseURLs)
				}
			},
		},
		"two replicas on one host get different identities": {
			opts: Options{LeaderElection: true, EtcdEndpoints: []string{"https://a:2379"}},
			check: func(t *testing.T, o Options) {
				other := Options{KubeConfig: o.KubeConfig, DataDir: o.DataDir, LeaderElection: true, EtcdEndpoints: o.EtcdEndpoints}
				if err := other.setDefaults(); err != nil || other.LeaderElectionIdentity == o.LeaderElectionIdentity {
					t.Errorf("identities %q and %q (%v)", o.LeaderElectionIdentity, other.LeaderElectionIdentity, err)
				}
			},
		},
		"explicit identity and timings kept": {
			opts: Options{LeaderElection: true, EtcdEndpoints: []string{"https://a:2379"}, LeaderElectionIdentity: "hub-0",
				LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second, RetryPeriod: time.Second},
			check: func(t *testing.T, o Options) {
				if o.LeaderElectionIdentity != "hub-0" || o.LeaseDuration != 6*time.Second {
					t.Errorf("got %q, %s", o.LeaderElectionIdentity, o.LeaseDuration)
				}
			},
		},
		"renew deadline longer than the lease": {
			opts:    Options{LeaderElection: true, EtcdEndpoints: []string{"https://a:2379"}, LeaseDuration: 5 * time.Second, RenewDeadline: 10 * time.Second},
			wantErr: "renew deadline (10s) < lease duration (5s)",
		},
		"embedded etcd": {opts: Options{LeaderElection: true}, wantErr: "--leader-elect needs an external etcd cluster"},
	} {
		t.Run(name, func(t *testing.T) {
			o := tc.opts
			o.KubeConfig, o.DataDir = &rest.Config{}, t.TempDir()
			err := o.setDefaults()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
}
