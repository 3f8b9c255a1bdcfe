package chart_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/chart"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// TestAgentRunsFromChart runs `meshfed agent` as the chart's Deployment would: the
// container's args and environment from the rendered chart, authenticated with a token
// of the chart's ServiceAccount (TokenRequest), on a real kube-apiserver holding the
// chart's RBAC, against a real etcd standing in for the hub's. So a flag the chart
// passes that the binary lacks, or a permission the chart forgets, fails it: the agent
// must become Ready, take its leader Lease under the pod's name and make its xDS
// serving CA. Only the listen addresses and volume paths move (chart.NewPod; the flags
// stay) and --kubeconfig replaces the in-cluster config a pod would have.
func TestAgentRunsFromChart(t *testing.T) {
	cp := localkube.ForTest(t, "member")[0]
	objs := render(t, map[string]any{"namespace": map[string]any{"create": true}, "gateway": off()})
	applier(t, cp.Config)(objs)
	deploy := deployment(t, objs, "meshfed-agent")
	admin := kubernetes.NewForConfigOrDie(cp.Config)
	ctx := context.Background()

	creds := startEtcd(t)
	secret := agentcreds.Credentials{Cluster: "member", Etcd: creds}.Secret(chart.Namespace)
	if _, err := admin.CoreV1().Secrets(chart.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	const podName = "meshfed-agent-7d9c5-x2x4q"
	pod, refused := startFromChart(t, cp.Config, deploy, chart.PodOptions{Name: podName})

	waitReady(t, "http://"+pod.Addr(9092)+"/readyz", refused)
	testutil.Eventually(t, 30*time.Second, "the agent to lead under its pod's name and make its xDS serving CA", func() error {
		refused()
		lease, err := admin.CoordinationV1().Leases(chart.Namespace).Get(ctx, "meshfed-agent", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := ptr.Deref(lease.Spec.HolderIdentity, ""); got != podName {
			return fmt.Errorf("Lease held by %q", got)
		}
		_, err = admin.CoreV1().Secrets(chart.Namespace).Get(ctx, "meshfed-xds-ca", metav1.GetOptions{})
		return err
	})
	refused()
}

// startFromChart starts the Deployment's pod as a local process placed by o
// (chart.NewPod), authenticated as the Deployment's ServiceAccount. It returns the
// pod and a check that fails the test at once when the API server refused the
// process anything (the chart's RBAC lacks a rule) or the process exited.
func startFromChart(t *testing.T, admin *rest.Config, deploy *appsv1.Deployment, o chart.PodOptions) (*chart.Pod, func()) {
	t.Helper()
	dir := t.TempDir()
	o.Admin, o.Dir = admin, dir
	pod, err := chart.NewPod(context.Background(), deploy, o)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pod.Start(meshfedBin, filepath.Join(dir, deploy.Name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(p.LogPath)
			t.Logf("%s log:\n%s", deploy.Name, log)
		}
	})
	t.Logf("meshfed %s", strings.Join(pod.Args, " "))
	forbidden := regexp.MustCompile(`(?i)forbidden|cannot (get|list|watch|create|update|patch|delete)`)
	refused := func() {
		t.Helper()
		log, _ := os.ReadFile(p.LogPath)
		if m := forbidden.FindAll(log, 3); len(m) > 0 {
			for _, line := range regexp.MustCompile(`.*(is forbidden|cannot (get|list|watch|create|update|patch|delete)).*`).FindAll(log, 5) {
				t.Logf("refused: %.400s", line)
			}
			t.Fatalf("%s was refused by the API server (the chart's RBAC lacks a rule): %q", deploy.Name, m)
		}
		if p.Exited() {
			t.Fatalf("%s exited: %v", deploy.Name, p.Failure())
		}
	}
	return pod, refused
}

// waitReady waits until url answers 200, failing at once on refused().
func waitReady(t *testing.T, url string, refused func()) {
	t.Helper()
	testutil.Eventually(t, time.Minute, url+" to answer 200", func() error {
		refused()
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

// startEtcd starts an etcd with client certificate authentication and returns client
// credentials for it, as registration would give the agent.
func startEtcd(t *testing.T) etcdconn.Credentials {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("chart-test-etcd-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey, err := ca.Issue(pki.ServerTemplate("etcd", "127.0.0.1", "localhost"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey, err := ca.Issue(pki.ClientTemplate("member"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": serverCert, "tls.key": serverKey} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := embedetcd.Start(context.Background(), embedetcd.Options{DataDir: filepath.Join(dir, "data"),
		ClientTLS: &embedetcd.TLS{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
			TrustedCAFile: filepath.Join(dir, "ca.crt"), ClientCertAuth: true},
		ZapLogger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	creds := etcdconn.Credentials{Endpoints: srv.Endpoints(), CA: ca.CertPEM, Cert: clientCert, Key: clientKey}
	// The hub's ready marker: agents serve a store only once the hub has written it.
	cli, err := etcdconn.New(context.Background(), creds)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ready, err := model.Encode(&model.HubReady{Since: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(context.Background(), keyspace.HubReady(), string(ready)); err != nil {
		t.Fatal(err)
	}
	return creds
}

func deployment(t *testing.T, objs []*unstructured.Unstructured, name string) *appsv1.Deployment {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "Deployment" && o.GetName() == name {
			d := &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatalf("the chart rendered no Deployment %s", name)
	return nil
}
