package fleetbench

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshfed/meshfed/internal/dev/proc"
)

// metric is the sum of the samples of a metric named name (all label sets) the agent
// serves at metricsURL.
func metric(ctx context.Context, metricsURL, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 64<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

// usage is the agent's CPU over a window.
type usage struct {
	pid   int
	cpu   time.Duration
	start time.Time
}

func startUsage(pid int) (usage, error) {
	c, err := proc.CPUTime(pid)
	return usage{pid: pid, cpu: c, start: time.Now()}, err
}

// percent is the agent's CPU since u started, in % of one core.
func (u usage) percent() (float64, time.Duration, error) {
	c, err := proc.CPUTime(u.pid)
	if err != nil {
		return 0, 0, err
	}
	return 100 * float64(c-u.cpu) / float64(time.Since(u.start)), c - u.cpu, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
