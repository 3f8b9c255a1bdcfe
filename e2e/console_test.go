package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// screenshotEnv names a file the console test also writes its screenshot to (the
// README's docs/images/console.png is made with it).
const screenshotEnv = "MESHFED_CONSOLE_SCREENSHOT"

// TestConsole is issue 12's console acceptance, in a real headless Chromium: the hub's
// page shows the sandbox's three clusters and their global service's ready endpoints,
// shows a cluster disconnected within the heartbeat TTL of its agent being killed, and
// its explain view prints what `meshfedctl failover explain` prints for the same
// client. The page loads nothing from any origin but the console's.
func TestConsole(t *testing.T) {
	chromium := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	const ttl = 3 * time.Second
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 3, MeshfedBinary: meshfedBin(),
		HeartbeatTTL: ttl, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)

	// shop/cart in every cluster, with endpoints ready in some zones only: nothing
	// listens on them, the console only counts them.
	want := map[string]string{} // cluster -> "ready/total" of shop/cart
	for i, c := range s.Clusters {
		svc := &service{namespace: "shop", name: "cart", port: 8080}
		for j, zone := range c.Zones {
			for k := range 2 {
				e := ready(fmt.Sprintf("10.250.250.%d", 1+i*10+j*2+k), zone)
				// alpha serves everywhere, beta only in its first zone, gamma in one zone with half its endpoints.
				if (i == 1 && j == 1) || (i == 2 && k == 1) {
					e.ready, e.serving = false, false
				}
				svc.endpoints = append(svc.endpoints, e)
			}
		}
		n := 0
		for _, e := range svc.endpoints {
			if e.ready {
				n++
			}
		}
		want[c.Name] = fmt.Sprintf("%d/%d", n, len(svc.endpoints))
		if err := svc.apply(ctx, kubernetes.NewForConfigOrDie(c.Config())); err != nil {
			t.Fatal(err)
		}
	}
	hub := hubClient(t, s)
	if err := hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	if err := hub.Create(ctx, &v1.GlobalService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec:       v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}}},
	}); err != nil {
		t.Fatal(err)
	}

	browser := headless(t, ctx, chromium)
	origin := "http://" + s.Hub.Replicas[0].ConsoleAddr
	var mu sync.Mutex
	var foreign []string
	err = chromedp.Listen(browser, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && !strings.HasPrefix(e.Request.URL, origin+"/") {
			mu.Lock()
			foreign = append(foreign, e.Request.URL)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	alpha := s.Cluster("alpha")
	client := url.Values{"cluster": {"alpha"}, "zone": {alpha.Zones[0]}, "service": {"shop/cart"}}
	if err := chromedp.Do(browser, chromedp.EmulateViewport(1280, 1000), chromedp.Navigate(origin+"/?"+client.Encode())); err != nil {
		t.Fatal(err)
	}
	type pageState struct {
		Clusters map[string]string `json:"clusters"` // name -> data-state
		Ready    map[string]string `json:"ready"`    // shop/cart's ready/total by cluster
		Explain  string            `json:"explain"`
		Status   string            `json:"explainState"`
	}
	read := func() (pageState, error) {
		raw, err := chromedp.Run(browser, chromedp.Evaluate[string](`JSON.stringify({
			clusters: Object.fromEntries([...document.querySelectorAll("#regions .cluster")].map(e => [e.dataset.cluster, e.dataset.state])),
			ready: Object.fromEntries([...document.querySelectorAll('#services tr[data-service="shop/cart"] [data-cluster]')]
				.map(e => [e.dataset.cluster, e.querySelector("span").textContent])),
			explain: document.getElementById("explain").textContent,
			explainState: document.getElementById("explain").dataset.state,
		})`))
		var p pageState
		if err == nil {
			err = json.Unmarshal([]byte(raw), &p)
		}
		return p, err
	}

	t.Run("three clusters connected, shop/cart's ready endpoints by cluster", func(t *testing.T) {
		testutil.Eventually(t, waitLong, "the page shows alpha, beta, gamma connected and shop/cart's endpoints", func() error {
			p, err := read()
			if err != nil {
				return err
			}
			if len(p.Clusters) != 3 || p.Clusters["alpha"] != "connected" || p.Clusters["beta"] != "connected" || p.Clusters["gamma"] != "connected" {
				return fmt.Errorf("clusters %v", p.Clusters)
			}
			for c, w := range want {
				if p.Ready[c] != w {
					return fmt.Errorf("shop/cart ready by cluster %v, want %v", p.Ready, want)
				}
			}
			return nil
		})
	})

	t.Run("explain view prints what meshfedctl failover explain prints", func(t *testing.T) {
		testutil.Eventually(t, waitLong, "the page's explain equals meshfedctl's", func() error {
			p, err := read()
			if err != nil {
				return err
			}
			out, err := exec.Command(meshfedctlBin(), "failover", "explain", "--service", "shop/cart", "--cluster", "alpha",
				"--zone", alpha.Zones[0], "--dir", s.Dir).CombinedOutput()
			if err != nil {
				return fmt.Errorf("meshfedctl failover explain: %v\n%s", err, out)
			}
			if p.Status != "ok" || p.Explain != string(out) {
				return fmt.Errorf("page (%s):\n%s\nmeshfedctl:\n%s", p.Status, p.Explain, out)
			}
			if !strings.Contains(p.Explain, "client:  cluster alpha, region us-east, zone "+alpha.Zones[0]) || !strings.Contains(p.Explain, "PRIORITY") {
				return fmt.Errorf("explain is not alpha/%s's table:\n%s", alpha.Zones[0], p.Explain)
			}
			return nil
		})
	})

	t.Run("screenshot", func(t *testing.T) {
		shot, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(shot)); err != nil {
			t.Fatalf("screenshot is not a PNG: %v", err)
		}
		paths := []string{filepath.Join(t.TempDir(), "console.png")}
		if p := os.Getenv(screenshotEnv); p != "" {
			paths = append(paths, p)
		}
		for _, p := range paths {
			if err := os.WriteFile(p, shot, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("screenshot: %d bytes, %s", len(shot), strings.Join(paths, ", "))
	})

	t.Run("a killed agent's cluster shows disconnected within the heartbeat TTL", func(t *testing.T) {
		killed := time.Now()
		s.StopAgent("gamma", syscall.SIGKILL)
		// The lease expires at most ttl after the last keep-alive; the page polls
		// every second.
		testutil.Eventually(t, ttl+2*time.Second, "gamma disconnected on the page", func() error {
			p, err := read()
			if err != nil {
				return err
			}
			if p.Clusters["gamma"] != "disconnected" || p.Clusters["alpha"] != "connected" || p.Clusters["beta"] != "connected" {
				return fmt.Errorf("clusters %v", p.Clusters)
			}
			return nil
		})
		t.Logf("gamma shown disconnected %s after its agent was killed (heartbeat TTL %s)", time.Since(killed).Round(10*time.Millisecond), ttl)
	})

	mu.Lock()
	defer mu.Unlock()
	if len(foreign) > 0 {
		t.Errorf("the page requested URLs outside the console's origin %s: %v", origin, foreign)
	}
}

// chromiumPath is Debian's chromium, installed by hack/chromium.sh when missing. A
// machine that cannot install it fails the test: the console is proven in a real
// browser or not at all.
func chromiumPath(t *testing.T) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command("bash", "../hack/chromium.sh")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/chromium.sh: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// headless starts chromium without a display, and returns a browser context ended
// with the test.
func headless(t *testing.T, ctx context.Context, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()))
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	// Open the tab now, so that Listen sees every event of the page.
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return browser
}
