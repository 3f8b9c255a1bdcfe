package chart

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/proc"
)

// PodOptions place one pod of a rendered Deployment on this machine.
type PodOptions struct {
	// Name is the pod's name (what the downward API's metadata.name gives).
	Name string
	// Admin is an administrator config of the cluster the pod runs in: the kubelet's
	// view, to mint the ServiceAccount's token and read the Secrets the pod mounts.
	Admin *rest.Config
	// Dir holds the pod's volumes and kubeconfig.
	Dir string
	// Ports are the pod's ports to serve on fixed local addresses (container port →
	// host:port). Every other port the pod serves (a containerPort, or a port its
	// args bind on loopback and name in Ports) gets a free loopback port.
	Ports map[int32]string
	// Services are where the Services the args name (<svc>.<ns>.svc[.cluster.local]:
	// port, what cluster DNS and kube-proxy would answer) are reached from here, keyed
	// by "<svc>.<ns>:<port>".
	Services map[string]string
	// Volumes are local directories standing in for volumes of the pod, by volume
	// name: an emptyDir or claim that must outlive the process, or a Secret whose
	// files something else keeps current (as the kubelet would). Every other emptyDir
	// or claim is a directory under Dir; a Secret or ConfigMap is read once.
	Volumes map[string]string
	// ExtraArgs are appended to the container's args as they are (a test's knobs,
	// like `helm install --set <component>.extraArgs`).
	ExtraArgs []string
}

// Pod is the first container of a Deployment's pod template made ready to run as a
// local process, the way a kubelet would run it: its args with $(VAR) references
// expanded, every address it serves moved to this machine's loopback, every Service
// it dials resolved, every mounted path moved to a local directory, its environment
// from the downward API, and --kubeconfig with a token of the pod's ServiceAccount
// (unless the pod mounts no token). The flags stay as the chart wrote them, so a flag
// the binary lacks fails the process and a rule the chart's RBAC lacks is refused.
type Pod struct {
	Name string
	Args []string
	Env  []string
	// Addrs are the local addresses of the pod's ports (container port → host:port).
	Addrs map[int32]string
}

// NewPod prepares deploy's pod as o places it. The Deployment's ServiceAccount and
// any Secret it mounts must exist in o.Admin's cluster (apply the rendered chart
// first).
func NewPod(ctx context.Context, deploy *appsv1.Deployment, o PodOptions) (*Pod, error) {
	spec := deploy.Spec.Template.Spec
	if len(spec.Containers) == 0 {
		return nil, fmt.Errorf("Deployment %s has no container", deploy.Name)
	}
	c := spec.Containers[0]
	kube, err := kubernetes.NewForConfig(o.Admin)
	if err != nil {
		return nil, err
	}
	p := &Pod{Name: o.Name, Addrs: map[int32]string{}}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("pod %s of Deployment %s: %s", o.Name, deploy.Name, fmt.Sprintf(format, args...))
	}

	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env[e.Name] = o.Name
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = deploy.Namespace
		case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
			env[e.Name] = strconv.FormatInt(c.Resources.Limits.Memory().Value(), 10)
		default:
			return nil, fail("env %s: the local runner does not resolve %+v", e.Name, e.ValueFrom)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		p.Env = append(p.Env, k+"="+env[k])
	}

	volumes, err := localVolumes(ctx, kube, deploy.Namespace, spec.Volumes, o)
	if err != nil {
		return nil, fail("%v", err)
	}
	mounts := map[string]string{} // mount path → local directory
	for _, m := range c.VolumeMounts {
		dir, ok := volumes[m.Name]
		if !ok {
			return nil, fail("volume mount %s names no volume", m.Name)
		}
		mounts[m.MountPath] = filepath.Join(dir, m.SubPath)
	}

	declared := map[int32]bool{}
	for _, cp := range c.Ports {
		declared[cp.ContainerPort] = true
	}
	local := func(port int32) (string, error) {
		if a, ok := p.Addrs[port]; ok {
			return a, nil
		}
		a, ok := o.Ports[port]
		if !ok {
			free, err := localkube.FreePorts(1)
			if err != nil {
				return "", err
			}
			a = net.JoinHostPort("127.0.0.1", strconv.Itoa(free[0]))
		}
		p.Addrs[port] = a
		return a, nil
	}
	for _, cp := range c.Ports {
		if _, err := local(cp.ContainerPort); err != nil {
			return nil, err
		}
	}

	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, a := range c.Args {
		a = ref.ReplaceAllStringFunc(a, func(m string) string {
			if v, ok := env[m[2:len(m)-1]]; ok {
				return v
			}
			return m
		})
		flag, value, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(flag, "--") {
			p.Args = append(p.Args, a)
			continue
		}
		var out []string
		for _, v := range strings.Split(value, ",") {
			v, err := localValue(v, mounts, o.Services, func(port int32) bool { return declared[port] || o.Ports[port] != "" }, local)
			if err != nil {
				return nil, fail("%s: %v", flag, err)
			}
			out = append(out, v)
		}
		p.Args = append(p.Args, flag+"="+strings.Join(out, ","))
	}
	p.Args = append(p.Args, o.ExtraArgs...)

	if ptr.Deref(spec.AutomountServiceAccountToken, true) {
		kubeconfig, err := tokenKubeconfig(ctx, kube, o.Admin, deploy.Namespace, spec.ServiceAccountName, o.Dir)
		if err != nil {
			return nil, fail("%v", err)
		}
		p.Args = append(p.Args, "--kubeconfig="+kubeconfig)
	}
	return p, nil
}

// Start runs the pod's container: binary with the pod's args and environment,
// its output appended to logPath.
func (p *Pod) Start(binary, logPath string) (*proc.Process, error) {
	return proc.Start(p.Name, binary, p.Args, logPath, p.Env...)
}

// Addr is the local address of the pod's port, "" if the pod has none.
func (p *Pod) Addr(port int32) string { return p.Addrs[port] }

// localValue places one flag value (or one item of a comma-separated list): a path
// under a mount moves to the mount's local directory; an address of a Service
// becomes the Service's local address; an address the pod serves (wildcard or
// loopback host, on a port served reports) becomes the port's local address.
// Anything else stays.
func localValue(v string, mounts, services map[string]string, served func(int32) bool, local func(int32) (string, error)) (string, error) {
	for _, mp := range slices.Sorted(maps.Keys(mounts)) {
		if v == mp || strings.HasPrefix(v, mp+"/") {
			return mounts[mp] + strings.TrimPrefix(v, mp), nil
		}
	}
	hostport, rebuild := v, func(a string) string { return a }
	if u, err := url.Parse(v); err == nil && u.Scheme != "" && u.Host != "" {
		hostport = u.Host
		rebuild = func(a string) string { u.Host = a; return u.String() }
	}
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		return v, nil
	}
	port, err := strconv.ParseInt(portText, 10, 32)
	if err != nil {
		return v, nil
	}
	if svc, ok := serviceKey(host); ok {
		key := svc + ":" + portText
		a, ok := services[key]
		if !ok {
			return "", fmt.Errorf("%s names Service %s, which has no local address (PodOptions.Services)", v, key)
		}
		return rebuild(a), nil
	}
	switch host {
	case "", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost":
		if served(int32(port)) {
			a, err := local(int32(port))
			if err != nil {
				return "", err
			}
			return rebuild(a), nil
		}
	}
	return v, nil
}

// serviceKey turns a Service's DNS name (<svc>.<ns>.svc or
// <svc>.<ns>.svc.cluster.local) into "<svc>.<ns>".
func serviceKey(host string) (string, bool) {
	name := strings.TrimSuffix(strings.TrimSuffix(host, "."), ".cluster.local")
	name, ok := strings.CutSuffix(name, ".svc")
	if !ok || strings.Count(name, ".") != 1 {
		return "", false
	}
	return name, true
}

// localVolumes gives each of the pod's volumes a local directory: o.Volumes' when it
// names one, a Secret's or ConfigMap's files written once (as the kubelet would, read
// with the cluster's administrator config), a directory under o.Dir for an emptyDir
// or a claim.
func localVolumes(ctx context.Context, kube kubernetes.Interface, ns string, vols []corev1.Volume, o PodOptions) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vols {
		if dir, ok := o.Volumes[v.Name]; ok {
			out[v.Name] = dir
			continue
		}
		dir := filepath.Join(o.Dir, "volumes", v.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		out[v.Name] = dir
		var files map[string][]byte
		switch {
		case v.EmptyDir != nil, v.PersistentVolumeClaim != nil:
			continue
		case v.Secret != nil:
			s, err := kube.CoreV1().Secrets(ns).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			files = s.Data
		case v.ConfigMap != nil:
			cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			files = map[string][]byte{}
			for k, d := range cm.Data {
				files[k] = []byte(d)
			}
		default:
			return nil, fmt.Errorf("volume %s: the local runner places emptyDir, persistentVolumeClaim, secret and configMap volumes, give others in PodOptions.Volumes", v.Name)
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// tokenKubeconfig writes a kubeconfig under dir that authenticates as ServiceAccount
// ns/sa with a token from the TokenRequest API (what a pod's projected token is).
func tokenKubeconfig(ctx context.Context, kube kubernetes.Interface, admin *rest.Config, ns, sa, dir string) (string, error) {
	if sa == "" {
		sa = "default"
	}
	tr, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64((7 * 24 * time.Hour).Seconds()))}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("a token of ServiceAccount %s/%s: %w", ns, sa, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	cfg := &rest.Config{Host: admin.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData}}
	return path, localkube.WriteKubeconfig(path, sa, cfg)
}
