package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	meshecho "github.com/meshfed/meshfed/internal/dev/echo"
)

// traffic keeps calling a global service through a proxyless client until the test
// ends, and counts where calls landed and how many failed, per phase of a scenario.
type traffic struct {
	name string
	conn *grpc.ClientConn

	mu       sync.Mutex
	phase    string
	phases   []string
	landed   map[string]map[string]int // phase -> backend -> calls
	failed   map[string]int            // phase -> calls
	errs     map[string]string         // phase -> last error
	first    []string                  // the first failures, with their time
	ok, fail int

	stop func()
}

// trafficPeriod paces the calls: enough to see any gap, little enough for 2 cores.
const trafficPeriod = 5 * time.Millisecond

// startTraffic calls through conn every trafficPeriod, in phase "start" until the
// first Phase call, and stops at Stop or when the test ends.
func startTraffic(t *testing.T, name string, conn *grpc.ClientConn) *traffic {
	tr := &traffic{name: name, conn: conn, phase: "start", phases: []string{"start"},
		landed: map[string]map[string]int{"start": {}}, failed: map[string]int{}, errs: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			id, err := meshecho.Call(cctx, conn)
			ccancel()
			if ctx.Err() != nil {
				return
			}
			tr.mu.Lock()
			if err != nil {
				tr.fail++
				tr.failed[tr.phase]++
				tr.errs[tr.phase] = err.Error()
				if len(tr.first) < 10 {
					tr.first = append(tr.first, time.Now().Format("15:04:05.000")+" "+err.Error())
				}
			} else {
				tr.ok++
				tr.landed[tr.phase][id]++
			}
			tr.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(trafficPeriod):
			}
		}
	}()
	var once sync.Once
	tr.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(tr.Stop)
	return tr
}

// Stop ends the calls.
func (tr *traffic) Stop() { tr.stop() }

// Totals returns the calls made and how many failed.
func (tr *traffic) Totals() (calls, failed int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.ok + tr.fail, tr.fail
}

// Failures returns the first failures, with their times.
func (tr *traffic) Failures() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.first)
}

// Phase starts counting a new phase.
func (tr *traffic) Phase(name string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.phase = name
	tr.phases = append(tr.phases, name)
	tr.landed[name] = map[string]int{}
}

// Failed returns the failed calls of every phase, and the last error.
func (tr *traffic) Failed() (int, string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n, last := 0, ""
	for _, p := range tr.phases {
		n += tr.failed[p]
		if e := tr.errs[p]; e != "" {
			last = p + ": " + e
		}
	}
	return n, last
}

// Print writes a table: per phase, calls, failures and where calls landed.
func (tr *traffic) Print(w io.Writer) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s: PHASE\tCALLS\tFAILED\tLANDED\n", tr.name)
	for _, p := range tr.phases {
		landed, total := []string{}, tr.failed[p]
		for _, id := range slices.Sorted(maps.Keys(tr.landed[p])) {
			landed = append(landed, fmt.Sprintf("%s %d", id, tr.landed[p][id]))
			total += tr.landed[p][id]
		}
		fmt.Fprintf(tw, "%s: %s\t%d\t%d\t%s\n", tr.name, p, total, tr.failed[p], strings.Join(landed, ", "))
	}
	tw.Flush()
}
