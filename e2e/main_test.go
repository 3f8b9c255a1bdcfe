package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc"

	"github.com/meshfed/meshfed/clusteragent"
	meshecho "github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
)

// bin holds the meshfed and meshfedctl binaries built for this run.
var bin string

// echoEnv makes the test binary a TCP echo server on the comma-separated addresses.
const echoEnv = "MESHFED_E2E_ECHO"

func TestMain(m *testing.M) {
	// grpc-go reads its experimental xDS settings once, at start: sending the SNI of
	// a cluster's TLS context (east-west gateways route on it) must be on before.
	if os.Getenv("GRPC_EXPERIMENTAL_XDS_SNI") != "true" {
		self, err := os.Executable()
		if err == nil {
			err = syscall.Exec(self, os.Args, append(os.Environ(), "GRPC_EXPERIMENTAL_XDS_SNI=true"))
		}
		fmt.Fprintln(os.Stderr, "re-exec with GRPC_EXPERIMENTAL_XDS_SNI=true:", err)
		os.Exit(1)
	}
	if addrs := os.Getenv(echoEnv); addrs != "" {
		echo(strings.Split(addrs, ","))
		return
	}
	if servers := os.Getenv(mtlsEchoEnv); servers != "" {
		mtlsEcho(strings.Split(servers, ","), os.Getenv(tlsEchoDirEnv))
		return
	}
	if spec := os.Getenv(reloadingEchoEnv); spec != "" {
		reloadingEcho(spec, os.Getenv(tlsEchoDirEnv))
		return
	}
	if addr := os.Getenv(tlsEchoEnv); addr != "" {
		tlsEcho(addr, os.Getenv(tlsEchoDirEnv))
		return
	}
	if servers := os.Getenv(grpcEchoEnv); servers != "" {
		grpcEcho(strings.Split(servers, ","))
		return
	}
	dir, err := os.MkdirTemp("", "meshfed-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/meshfed", "../cmd/meshfedctl")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build meshfed:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// grpcEchoEnv makes the test binary gRPC echo servers: "addr=id,addr=id". A server
// given as "addr=id;<xDS server>;<region>;<zone>;<cert dir>[;<behaviour>]" is a
// proxyless gRPC xDS server of that agent instead (see xdsEchoSpec): its mTLS comes
// from the agent's Listener and its workload certificate from the cert dir; it
// misbehaves as the echo.Behaviour written last says (e.g. "fail=30").
const grpcEchoEnv = "MESHFED_E2E_GRPC_ECHO"

// grpcEcho serves the echo service on each address, answering with its id.
func grpcEcho(servers []string) {
	for _, spec := range servers {
		spec, proxy, isXDS := strings.Cut(spec, ";")
		addr, id, _ := strings.Cut(spec, "=")
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if isXDS {
			p := strings.Split(proxy, ";")
			if len(p) == 4 {
				p = append(p, "")
			}
			b, err := meshecho.ParseBehaviour(p[len(p)-1])
			if len(p) != 5 || err != nil {
				fmt.Fprintln(os.Stderr, "bad xDS echo spec:", proxy, err)
				os.Exit(2)
			}
			if _, err := meshecho.ServeXDSWith(l, id, meshecho.Proxy{XDSServer: p[0], NodeID: "echo-" + addr,
				Region: p[1], Zone: p[2], CertDir: p[3]}, b); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			continue
		}
		s := grpc.NewServer()
		meshecho.Register(s, id)
		go s.Serve(l) //nolint:errcheck
	}
	select {}
}

// xdsEchoSpec is the grpcEchoEnv spec of an echo server on addr answering id, as a
// proxyless gRPC xDS server of the agent at xdsServer with the certificates in
// certDir.
func xdsEchoSpec(addr, id, xdsServer, region, zone, certDir string) string {
	return addr + "=" + id + ";" + xdsServer + ";" + region + ";" + zone + ";" + certDir
}

// echo serves TCP echo on every address until killed.
func echo(addrs []string) {
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 4096)
					for {
						n, err := c.Read(buf)
						if err != nil {
							return
						}
						c.Write(buf[:n]) //nolint:errcheck
					}
				}()
			}
		}()
	}
	select {}
}

func meshfedBin() string    { return filepath.Join(bin, "meshfed") }
func meshfedctlBin() string { return filepath.Join(bin, "meshfedctl") }

// downAfter stops s when the test ends, after checking that the API server refused
// none of its processes anything during the test: every sandbox runs from the
// chart, so a rule its RBAC lacks that only one step needs (a renewal, a rotation)
// fails the test that took that step.
func downAfter(t *testing.T, s *sandbox.Sandbox) {
	t.Cleanup(func() {
		if err := s.Refused(); err != nil {
			t.Error(err)
		}
		s.Down()
	})
}

// agentView fetches an agent's /debug/view.
func agentView(ctx context.Context, addr string) (*clusteragent.DebugView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/view", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	v := &clusteragent.DebugView{}
	return v, json.NewDecoder(resp.Body).Decode(v)
}

// meshfedTestBinary is this test binary, which serves echo under echoEnv.
func meshfedTestBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}
