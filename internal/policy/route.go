package policy

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Match is what applies to one call of a global service.
type Match struct {
	// Route is the name of the route that matched; "" when none did (or the service
	// has no TrafficPolicy): the service's defaults, every field below empty but
	// Retries.
	Route string
	// Timeout bounds the call, retries included; 0: none.
	Timeout time.Duration
	// Retries are the route's, else FailoverRetries: never nil.
	Retries *model.Retries
	// Fault, nil: none.
	Fault *model.Fault
	// Split sends the call to subsets by weight; empty: any endpoint of the service.
	Split []model.WeightedSubset
}

// Route returns what applies to a call of method ("/pkg.Service/Method") with
// headers (gRPC metadata: lower-case keys, as metadata.MD holds them) under tp, which
// may be nil: the first route whose match the call satisfies, or the defaults.
func Route(tp *model.TrafficPolicy, method string, headers map[string][]string) Match {
	if tp == nil {
		return Match{Retries: FailoverRetries()}
	}
	for _, r := range tp.Routes {
		if (len(r.Methods) == 0 || MatchMethod(r.Methods, method)) && headersMatch(r.Headers, headers) {
			m := Match{Route: r.Name, Timeout: r.Timeout.Duration, Retries: r.Retries, Fault: r.Fault, Split: r.Split}
			if m.Retries == nil {
				m.Retries = FailoverRetries()
			}
			return m
		}
	}
	return Match{Retries: FailoverRetries()}
}

// FailoverRetries are the retries of every call whose route sets none (no route
// matches, or the service has no TrafficPolicy): a call that failed to reach a copy
// that just died is retried on another, so that together with priorities clients see
// no failure. Two retries of Unavailable and Cancelled, in that order, with gRPC's
// default backoff (what the API defaults a route's backoff to).
func FailoverRetries() *model.Retries {
	base := v1.DefaultRetryBackoffBase
	return &model.Retries{Attempts: 2, On: []string{string(v1.RetryOnUnavailable), string(v1.RetryOnCancelled)},
		BackoffBase: metav1.Duration{Duration: base}, BackoffMax: metav1.Duration{Duration: v1.RetryBackoffMaxFactor * base}}
}

func headersMatch(matches []model.HeaderMatch, headers map[string][]string) bool {
	for _, m := range matches {
		if !headerMatches(m, headers[strings.ToLower(m.Name)]) {
			return false
		}
	}
	return true
}

// headerMatches reports whether one header match holds for the values of its key.
// With several values (a key repeated), any value may match.
func headerMatches(m model.HeaderMatch, values []string) bool {
	if m.Present != nil {
		return *m.Present == (len(values) > 0)
	}
	var re *regexp.Regexp
	if m.Regex != nil {
		var err error
		if re, err = regexp.Compile(`^(?:` + *m.Regex + `)$`); err != nil {
			return false // model.Validate refuses such records; never reached
		}
	}
	return slices.ContainsFunc(values, func(v string) bool {
		switch {
		case m.Exact != nil:
			return v == *m.Exact
		case m.Prefix != nil:
			return strings.HasPrefix(v, *m.Prefix)
		case re != nil:
			return re.MatchString(v)
		}
		return false
	})
}

// SubsetOf is the subset of tp an endpoint in cluster with labels is in: the first
// (in tp's order) whose clusters (if any) include cluster and whose labels (if any)
// the endpoint carries, else "" (the endpoints in no subset). tp may be nil.
func SubsetOf(tp *model.TrafficPolicy, cluster string, labels map[string]string) string {
	if tp == nil {
		return ""
	}
	for _, s := range tp.Subsets {
		if len(s.Clusters) > 0 && !slices.Contains(s.Clusters, cluster) {
			continue
		}
		if maps.EqualFunc(s.Labels, filter(labels, s.Labels), func(a, b string) bool { return a == b }) {
			return s.Name
		}
	}
	return ""
}

// filter is labels restricted to want's keys.
func filter(labels, want map[string]string) map[string]string {
	out := make(map[string]string, len(want))
	for k := range want {
		if v, ok := labels[k]; ok {
			out[k] = v
		}
	}
	return out
}
