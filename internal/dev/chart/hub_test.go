package chart_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfed/meshfed/internal/dev/chart"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// TestHubRunsFromChart runs `meshfed hub` with the mesh CA as the chart's Deployment
// would (see TestAgentRunsFromChart): the rendered args and environment, the embedded
// etcd's data on the path of the chart's volume, authenticated as the chart's
// ServiceAccount with only the chart's RBAC (mesh CA rules included). It must become
// Ready and publish its ConfigMap and the mesh root's ClusterIssuer, and the API server
// must refuse it nothing.
func TestHubRunsFromChart(t *testing.T) {
	cp := localkube.ForTest(t, "hub")[0]
	objs := render(t, map[string]any{"namespace": map[string]any{"create": true},
		"hub": map[string]any{"enabled": true, "meshCA": true}, "agent": off(), "gateway": off()})
	applier(t, cp.Config)(objs)
	deploy := deployment(t, objs, "meshfed-hub")
	// The hub advertises its etcd by the meshfed-hub Service's name: here, the pod's
	// local etcd address.
	ports, err := localkube.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	etcd := "127.0.0.1:" + strconv.Itoa(ports[0])
	pod, refused := startFromChart(t, cp.Config, deploy, chart.PodOptions{Name: "meshfed-hub-5f7b9-q8w2z",
		Ports: map[int32]string{2379: etcd}, Services: map[string]string{"meshfed-hub.meshfed-system:2379": etcd}})
	waitReady(t, "http://"+pod.Addr(9091)+"/readyz", refused)

	admin := kubernetes.NewForConfigOrDie(cp.Config)
	testutil.Eventually(t, time.Minute, "the hub's ConfigMap and the mesh root's ClusterIssuer", func() error {
		refused()
		if _, err := admin.CoreV1().ConfigMaps(chart.Namespace).Get(context.Background(), "meshfed-hub", metav1.GetOptions{}); err != nil {
			return err
		}
		_, err := admin.RESTClient().Get().AbsPath("/apis/cert-manager.io/v1/clusterissuers/meshfed-root").DoRaw(context.Background())
		return err
	})
	refused()
}
