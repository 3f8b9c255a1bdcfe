package check

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// families are the metric families of one scrape, by name.
type families map[string]*dto.MetricFamily

// scrape reads base/metrics.
func scrape(ctx context.Context, c *http.Client, base string) (families, error) {
	body, err := get(ctx, c, base, "/metrics")
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	f, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("%s/metrics: %w", base, err)
	}
	return f, nil
}

// get fetches base+path and returns the body of a 200 answer.
func get(ctx context.Context, c *http.Client, base, path string) ([]byte, error) {
	url := strings.TrimSuffix(base, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// sample is one series: its labels and value.
type sample struct {
	labels map[string]string
	value  float64
}

// samples are the series of a gauge or counter family; none when it is absent.
func (f families) samples(name string) []sample {
	mf, ok := f[name]
	if !ok {
		return nil
	}
	var out []sample
	for _, m := range mf.GetMetric() {
		s := sample{labels: map[string]string{}}
		for _, l := range m.GetLabel() {
			s.labels[l.GetName()] = l.GetValue()
		}
		switch {
		case m.Gauge != nil:
			s.value = m.GetGauge().GetValue()
		case m.Counter != nil:
			s.value = m.GetCounter().GetValue()
		case m.Untyped != nil:
			s.value = m.GetUntyped().GetValue()
		}
		out = append(out, s)
	}
	return out
}

// sum adds a family's series; ok is false when it is absent.
func (f families) sum(name string) (total float64, ok bool) {
	s := f.samples(name)
	for _, x := range s {
		total += x.value
	}
	return total, len(s) > 0
}
