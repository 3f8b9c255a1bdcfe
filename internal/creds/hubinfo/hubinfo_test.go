package hubinfo

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func configMap(data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: ConfigMapName}, Data: data}
}

// TestRead: the hub's ConfigMap, with its version and as a hub that predates the
// version key wrote it.
func TestRead(t *testing.T) {
	for name, ver := range map[string]string{"with version": "v0.3.0 (go1.26.8, linux/amd64)", "older hub": ""} {
		t.Run(name, func(t *testing.T) {
			data := map[string]string{
				KeyEtcdEndpoints: " https://10.0.0.1:2379, ,https://hub.example:2379 ,",
				KeyEtcdCA:        "PEM",
			}
			if ver != "" {
				data[KeyVersion] = ver
			}
			got, err := Read(context.Background(), fake.NewClientset(configMap(data)))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			want := Info{EtcdEndpoints: []string{"https://10.0.0.1:2379", "https://hub.example:2379"}, EtcdCA: []byte("PEM"), Version: ver}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Read (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	forbidden := fake.NewClientset()
	forbidden.PrependReactor("get", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, ConfigMapName, nil)
	})
	for name, tc := range map[string]struct {
		hub  *fake.Clientset
		want []string
	}{
		"no ConfigMap": {fake.NewClientset(), []string{Namespace + "/" + ConfigMapName, "has not published", "meshfed hub"}},
		"ConfigMap in another namespace": {fake.NewClientset(&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: ConfigMapName},
			Data:       map[string]string{KeyEtcdEndpoints: "https://a:2379", KeyEtcdCA: "PEM"},
		}), []string{"has not published"}},
		"no endpoints":    {fake.NewClientset(configMap(map[string]string{KeyEtcdCA: "PEM"})), []string{KeyEtcdEndpoints}},
		"only separators": {fake.NewClientset(configMap(map[string]string{KeyEtcdEndpoints: " , ", KeyEtcdCA: "PEM"})), []string{KeyEtcdEndpoints}},
		"no CA":           {fake.NewClientset(configMap(map[string]string{KeyEtcdEndpoints: "https://a:2379"})), []string{KeyEtcdCA}},
		"empty ConfigMap": {fake.NewClientset(configMap(nil)), []string{KeyEtcdEndpoints, KeyEtcdCA}},
		"forbidden":       {forbidden, []string{"read hub info", "forbidden"}},
	} {
		t.Run(name, func(t *testing.T) {
			info, err := Read(context.Background(), tc.hub)
			if err == nil {
				t.Fatalf("Read = %+v, want an error", info)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if name == "forbidden" && !apierrors.IsForbidden(err) {
				t.Errorf("error %v does not wrap the API error", err)
			}
		})
	}
}

func TestEtcdUserRoundTrip(t *testing.T) {
	reg := NewRegistration()
	if err := ValidateRegistration(reg); err != nil {
		t.Fatalf("NewRegistration() = %q: %v", reg, err)
	}
	if other := NewRegistration(); other == reg {
		t.Errorf("two registrations are both %q", reg)
	}
	for _, cluster := range []string{"a", "alpha", "east-1", "0", strings.Repeat("x", 63), "meshfed-cluster-a"} {
		for _, registration := range []string{"", reg} {
			user := EtcdUser(cluster, registration)
			if !strings.HasPrefix(user, EtcdRole(cluster)) {
				t.Errorf("EtcdUser(%q, %q) = %q, want the prefix %q", cluster, registration, user, EtcdRole(cluster))
			}
			gotCluster, gotReg, ok := ParseEtcdUser(user)
			if !ok || gotCluster != cluster || gotReg != registration {
				t.Errorf("ParseEtcdUser(%q) = %q, %q, %v; want %q, %q, true", user, gotCluster, gotReg, ok, cluster, registration)
			}
		}
	}
	if got := EtcdUser("alpha", ""); got != "meshfed-cluster-alpha" {
		t.Errorf("the user of a cluster registered before registrations existed is %q, want meshfed-cluster-alpha", got)
	}
}

// Only the etcd user of a valid cluster name (and registration) maps back to a
// cluster: never etcd's root, a bare cluster name, or a name that could not be a key
// segment or a registration.
func TestParseEtcdUserRejects(t *testing.T) {
	for _, user := range []string{
		"", "root", "alpha", "meshfed-cluster-", "meshfed-cluster", "Meshfed-cluster-alpha", "xmeshfed-cluster-alpha",
		"meshfed-cluster-Alpha", "meshfed-cluster-a.b", "meshfed-cluster-a/b", "meshfed-cluster--a", "meshfed-cluster-a-",
		"meshfed-cluster-a_b", "meshfed-cluster- a", "meshfed-cluster-" + strings.Repeat("x", 64),
		"meshfed-cluster-a.", "meshfed-cluster-a.0123456789ABCDEF", "meshfed-cluster-a.0123456789abcde",
		"meshfed-cluster-a.0123456789abcdef0", "meshfed-cluster-a.0123456789abcdef.0123456789abcdef",
		"meshfed-cluster-.0123456789abcdef",
	} {
		if cluster, reg, ok := ParseEtcdUser(user); ok {
			t.Errorf("ParseEtcdUser(%q) = %q, %q, true; want it refused", user, cluster, reg)
		}
	}
}
