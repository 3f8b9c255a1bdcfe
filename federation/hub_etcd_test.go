package federation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshfed/meshfed/federation/internal/etcdmaint"
	"github.com/meshfed/meshfed/federation/internal/etcdsec"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
)

// A hub whose embedded etcd (16 MiB quota) is written into NOSPACE recovers it by
// itself: the alarm is disarmed, writes succeed again, every key keeps its latest
// value, and the hub says so in an Event on its namespace and in its metrics.
func TestHubRecoversEtcdFromNoSpace(t *testing.T) {
	cp := localkube.ForTest(t, "hub")[0]
	ports, err := localkube.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := Options{
		KubeConfig: cp.Config, DataDir: dir, EtcdListenURL: fmt.Sprintf("https://127.0.0.1:%d", ports[0]),
		MetricsAddr: "0", HealthAddr: "0",
		EtcdQuotaBytes: 16 << 20, EtcdCheckInterval: 200 * time.Millisecond,
		Logger: testr.New(t),
	}
	testutil.Run(t, "hub", func(ctx context.Context) error { return Run(ctx, opts) })

	kube, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testutil.Eventually(t, time.Minute, "the hub published its ConfigMap", func() error {
		_, err := kube.CoreV1().ConfigMaps(hubinfo.Namespace).Get(ctx, hubinfo.ConfigMapName, metav1.GetOptions{})
		return err
	})
	etcd := rootClient(t, ctx, dir, opts.EtcdListenURL)

	// Rewrites fill the quota with history; a writer as fast as this one
	// overshoots it (etcd checks the size of the last committed batch).
	// The write that returns NOSPACE may have been applied (etcd applies it,
	// then reports the quota exceeded): its key may hold either value.
	latest, ambiguous := map[string]string{}, map[string]string{}
	isNoSpace := func(err error) bool {
		return errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace)
	}
	for round := 0; ; round++ {
		if round > 1000 {
			t.Fatal("no NOSPACE after 1000 rounds")
		}
		k := fmt.Sprintf("/test/k%d", round%10)
		v := fmt.Sprintf("%d:%s", round, strings.Repeat("x", 64<<10))
		_, err := etcd.Put(ctx, k, v)
		if isNoSpace(err) {
			ambiguous[k] = v
			break
		}
		if err != nil {
			t.Fatalf("put: %v", err)
		}
		latest[k] = v
	}

	testutil.Eventually(t, time.Minute, "writes accepted again", func() error {
		_, err := etcd.Put(ctx, "/test/after", "x")
		return err
	})
	if alarms, err := etcd.AlarmList(ctx); err != nil || len(alarms.Alarms) != 0 {
		t.Fatalf("alarms = %v, %v; want none", alarms, err)
	}
	for k, v := range latest {
		resp, err := etcd.Get(ctx, k)
		if err != nil || len(resp.Kvs) != 1 || (string(resp.Kvs[0].Value) != v && string(resp.Kvs[0].Value) != ambiguous[k]) {
			t.Fatalf("key %s after recovery: %.200v, %v; want %.20s", k, resp, err, v)
		}
	}
	testutil.Eventually(t, 30*time.Second, "an Event says NOSPACE was recovered", func() error {
		list, err := kube.EventsV1().Events(hubinfo.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var reasons []string
		for _, e := range list.Items {
			if e.Reason == etcdmaint.ReasonNoSpaceRecovered && e.Regarding.Name == hubinfo.ConfigMapName {
				return nil
			}
			reasons = append(reasons, e.Reason)
		}
		return fmt.Errorf("events: %v", reasons)
	})
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var recovered float64
	for _, f := range families {
		if f.GetName() == "meshfed_hub_etcd_nospace_recoveries_total" {
			for _, m := range f.GetMetric() {
				if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "ok" {
					recovered = m.GetCounter().GetValue()
				}
			}
		}
	}
	if recovered < 1 {
		t.Errorf("meshfed_hub_etcd_nospace_recoveries_total{result=ok} = %v, want at least 1", recovered)
	}
}

// rootClient connects to the hub's embedded etcd as its root user, with a
// certificate from the CA the hub keeps in its data directory.
func rootClient(t *testing.T, ctx context.Context, dataDir, endpoint string) *clientv3.Client {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dataDir, "pki", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ca, err := pki.LoadCA(read("ca.crt"), read("ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(pki.ClientTemplate(etcdsec.RootUser), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := etcdconn.New(ctx, etcdconn.Credentials{Endpoints: []string{endpoint}, CA: ca.CertPEM, Cert: cert, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
