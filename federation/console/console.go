package console

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

//go:embed index.html
var page []byte

// csp allows the page its own inline style and script and requests to its own origin,
// nothing else: no asset can come from a CDN or anywhere.
const csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// explainTimeout bounds one question to an agent.
const explainTimeout = 5 * time.Second

// View is what the console reads of the hub's view.
type View interface {
	Clusters() []view.Cluster
	GlobalServices() []model.GlobalService
	HasSynced() bool
}

// Options configure a Server. View is required.
type Options struct {
	View View
	// Agents maps a cluster's name to the base URL of its agent's debug surface
	// (its --debug-addr, e.g. http://10.0.3.7:9094), where the console asks for
	// explain tables. Clusters without one have no explain view.
	Agents map[string]string
	// HTTPClient asks the agents. Default: a client with a 5s timeout.
	HTTPClient *http.Client
	// Clock dates snapshots and heartbeat ages; it should be the view's. Default:
	// the real clock.
	Clock  clock.PassiveClock
	Logger logr.Logger
}

// ParseAgents checks agent URLs given as cluster=URL and returns them by cluster.
func ParseAgents(m map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(m))
	for cluster, raw := range m {
		u, err := url.Parse(raw)
		if cluster == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			return nil, fmt.Errorf("console agent %q=%q: give <cluster>=<URL of the agent's debug address>, e.g. alpha=http://10.0.3.7:9094", cluster, raw)
		}
		out[cluster] = strings.TrimSuffix(u.String(), "/")
	}
	return out, nil
}

// Server serves the console. Create it with New.
type Server struct {
	opts Options
	mux  *http.ServeMux
}

// New returns a console over opts.View.
func New(opts Options) (*Server, error) {
	if opts.View == nil {
		return nil, errors.New("console: View is required")
	}
	agents, err := ParseAgents(opts.Agents)
	if err != nil {
		return nil, err
	}
	opts.Agents = agents
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: explainTimeout}
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /{$}", s.index)
	s.mux.HandleFunc("GET /api/federation", s.federation)
	s.mux.HandleFunc("GET /api/explain", s.explain)
	return s, nil
}

// ServeHTTP serves the page and its JSON, read-only: GET and HEAD only.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the console is read-only", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// Serve serves the console on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown) //nolint:errcheck // Serve returns the error that matters
	}()
	err := srv.Serve(l)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("console on %s: %w", l.Addr(), err)
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(page) //nolint:errcheck
}

func (s *Server) federation(w http.ResponseWriter, _ *http.Request) {
	v := s.opts.View
	explain := func(cluster string) bool { return s.opts.Agents[cluster] != "" }
	writeJSON(w, http.StatusOK, Snapshot(v.Clusters(), v.GlobalServices(), explain, v.HasSynced(), s.opts.Clock.Now()))
}

// Explanation is the JSON of /api/explain: the table `meshfedctl failover explain
// --service Service --cluster Cluster --zone Zone` prints (Text), or why there is
// none (Error).
type Explanation struct {
	Cluster string `json:"cluster"`
	Zone    string `json:"zone"`
	Service string `json:"service"`
	Text    string `json:"text,omitempty"`
	Error   string `json:"error,omitempty"`
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	out := Explanation{Cluster: q.Get("cluster"), Zone: q.Get("zone"), Service: q.Get("service")}
	ns, name, ok := strings.Cut(out.Service, "/")
	if !ok || ns == "" || name == "" || out.Cluster == "" {
		out.Error = "give cluster=<client cluster>, zone=<client zone> and service=<namespace>/<name>"
		writeJSON(w, http.StatusBadRequest, out)
		return
	}
	agent := s.opts.Agents[out.Cluster]
	if agent == "" {
		out.Error = fmt.Sprintf("the console does not know where the agent of %s answers: give the hub --console-agents %s=http://<its --debug-addr>, "+
			"or run meshfedctl failover explain --service %s --cluster %s --zone %s --agent <URL>", out.Cluster, out.Cluster, out.Service, out.Cluster, out.Zone)
		writeJSON(w, http.StatusNotFound, out)
		return
	}
	text, status, err := s.ask(r.Context(), agent, out.Service, out.Zone)
	if err != nil {
		out.Error = fmt.Sprintf("agent of %s at %s: %v", out.Cluster, agent, err)
		s.opts.Logger.V(1).Info("explain failed", "cluster", out.Cluster, "agent", agent, "error", err.Error())
		writeJSON(w, status, out)
		return
	}
	out.Text = text
	writeJSON(w, http.StatusOK, out)
}

// ask fetches the explain text from an agent's /debug/explain: the request
// `meshfedctl failover explain` makes, so that both print the same table.
func (s *Server) ask(ctx context.Context, agent, service, zone string) (string, int, error) {
	q := url.Values{"service": {service}, "zone": {zone}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, agent+"/debug/explain?"+q.Encode(), nil)
	if err != nil {
		return "", http.StatusInternalServerError, err
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return "", http.StatusBadGateway, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", http.StatusBadGateway, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", http.StatusBadGateway, errors.New(strings.TrimSpace(string(body)))
	}
	return string(body), http.StatusOK, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck
}
