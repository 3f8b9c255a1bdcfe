package certmanager

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshfed/meshfed/internal/dev/localkube"
)

// TestRunRestarts starts cert-manager, stops it, and starts it again on the same API
// server, as a restarted hub does: the CRDs re-apply and the controllers come back.
// Nothing Run started outlives it but cert-manager's event broadcasters.
func TestRunRestarts(t *testing.T) {
	cp := localkube.ForTest(t, "hub")[0]
	ignore := goleak.IgnoreCurrent()
	for i := range 2 {
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		cm, err := Run(ctx, cp.Config, Options{})
		if err != nil {
			cancel()
			t.Fatalf("Run #%d: %v", i+1, err)
		}
		t.Logf("Run #%d ready in %s", i+1, time.Since(start).Round(time.Millisecond))
		cancel()
		select {
		case <-cm.Done():
		case <-time.After(time.Minute):
			t.Fatalf("Run #%d: not done a minute after its context ended", i+1)
		}
		if err := cm.Err(); err != nil {
			t.Errorf("Run #%d stopped with %v", i+1, err)
		}
	}

	ext, err := apiextensionsclient.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"clusterissuers.cert-manager.io", "certificaterequests.cert-manager.io"} {
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("CRD %s: %v", name, err)
		}
	}
	kube := kubernetes.NewForConfigOrDie(cp.Config)
	if _, err := kube.CoreV1().Namespaces().Get(context.Background(), "meshfed-system", metav1.GetOptions{}); err != nil {
		t.Errorf("namespace meshfed-system: %v", err)
	}

	goleak.VerifyNone(t, ignore,
		// cert-manager's controller contexts start event broadcasters it never stops.
		goleak.IgnoreTopFunction("k8s.io/apimachinery/pkg/watch.(*Broadcaster).loop"),
		goleak.IgnoreTopFunction("k8s.io/client-go/tools/record.(*eventBroadcasterImpl).StartEventWatcher.func1"),
		// Idle keep-alive connections of the clients' shared transports.
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

func TestWriteKubeconfig(t *testing.T) {
	cfg := &rest.Config{
		Host:            "https://127.0.0.1:6443",
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte("ca"), CertData: []byte("cert"), KeyData: []byte("key"), ServerName: "hub"},
		BearerToken:     "token",
		Impersonate:     rest.ImpersonationConfig{UserName: "meshfed", Groups: []string{"g"}},
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := writeKubeconfig(cfg, path); err != nil {
		t.Fatal(err)
	}
	got, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Host != cfg.Host || string(got.CAData) != "ca" || string(got.CertData) != "cert" || string(got.KeyData) != "key" ||
		got.ServerName != "hub" || got.BearerToken != "token" || got.Impersonate.UserName != "meshfed" || len(got.Impersonate.Groups) != 1 {
		t.Errorf("round trip lost fields: %+v", got)
	}

	cfg.Transport = http.DefaultTransport
	if err := writeKubeconfig(cfg, path); err == nil || !strings.Contains(err.Error(), "Transport") {
		t.Errorf("writeKubeconfig with a custom Transport = %v, want an error", err)
	}
}
