package model

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

// The kinds of policy a PolicyRef names (the API kinds).
const (
	PolicyKindTraffic       = "TrafficPolicy"
	PolicyKindAuthorization = "AuthorizationPolicy"
)

// States of a PolicyProgrammed.
const (
	// StateProgrammed: every proxy of the cluster that subscribes to a resource the
	// policy's generation shaped ACKed a version carrying it.
	StateProgrammed = "Programmed"
	// StateRefused: a proxy NACKed such a resource; Message is its error_detail.
	StateRefused = "Refused"
	// StatePending: some proxy has not answered the version carrying it yet.
	StatePending = "Pending"
)

// Bounds of a Programmed report: Validate refuses a report beyond them, so that a
// member's report costs every reader at most this much.
const (
	// MaxProgrammedPolicies is how many policies one report may list.
	MaxProgrammedPolicies = 4096
	// MaxProgrammedMessage bounds a refusal's message, in bytes: proxies' NACK
	// messages embed whole resources (KBs); the agent truncates them to this.
	MaxProgrammedMessage = 512
	// maxProgrammedNode bounds the refusing node's description.
	maxProgrammedNode = 256
)

// PolicyRef names one generation of a TrafficPolicy or AuthorizationPolicy.
type PolicyRef struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Generation int64  `json:"generation"`
}

func (r PolicyRef) String() string {
	return fmt.Sprintf("%s %s/%s@%d", r.Kind, r.Namespace, r.Name, r.Generation)
}

// Ref is the reference to p's current generation.
func (p *TrafficPolicy) Ref() PolicyRef {
	return PolicyRef{Kind: PolicyKindTraffic, Namespace: p.Namespace, Name: p.Name, Generation: p.Generation}
}

// Ref is the reference to p's current generation.
func (p *AuthorizationPolicy) Ref() PolicyRef {
	return PolicyRef{Kind: PolicyKindAuthorization, Namespace: p.Namespace, Name: p.Name, Generation: p.Generation}
}

// ComparePolicyRefs orders refs by kind, namespace, name, generation.
func ComparePolicyRefs(a, b PolicyRef) int {
	if c := strings.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return int(a.Generation - b.Generation)
}

// Programmed is an agent's report (keyspace.ClusterProgrammed) of what its proxies
// did with the resources each policy generation shaped. A policy no proxy of the
// cluster subscribes to is not listed.
type Programmed struct {
	// Cluster is the reporting cluster: the key's.
	Cluster string `json:"cluster"`
	// Policies are sorted by ref (ComparePolicyRefs), one per policy.
	Policies []PolicyProgrammed `json:"policies,omitempty"`
}

// PolicyProgrammed is what one cluster's proxies did with one policy generation.
type PolicyProgrammed struct {
	Ref   PolicyRef `json:"ref"`
	State string    `json:"state"`
	// Message is the NACK's error_detail (Refused), at most MaxProgrammedMessage bytes.
	Message string `json:"message,omitempty"`
	// Node is the refusing proxy: its node id and locality (Refused).
	Node string `json:"node,omitempty"`
}

// Validate implements Record.
func (p *Programmed) Validate() error {
	if err := checkLabel("cluster", p.Cluster); err != nil {
		return err
	}
	if len(p.Policies) > MaxProgrammedPolicies {
		return invalid("programmed report lists %d policies, more than %d", len(p.Policies), MaxProgrammedPolicies)
	}
	for i, e := range p.Policies {
		r := e.Ref
		if r.Kind != PolicyKindTraffic && r.Kind != PolicyKindAuthorization {
			return invalid("programmed policies[%d]: kind %q is neither %s nor %s", i, r.Kind, PolicyKindTraffic, PolicyKindAuthorization)
		}
		if keyspace.ValidateNamespace(r.Namespace) != nil || keyspace.ValidateName(r.Name) != nil {
			return invalid("programmed policies[%d]: invalid namespace/name %q/%q", i, r.Namespace, r.Name)
		}
		if r.Generation < 0 {
			return invalid("programmed policies[%d]: negative generation", i)
		}
		if !slices.Contains([]string{StateProgrammed, StateRefused, StatePending}, e.State) {
			return invalid("programmed policies[%d]: state %q is not one of Programmed, Refused, Pending", i, e.State)
		}
		if len(e.Message) > MaxProgrammedMessage || len(e.Node) > maxProgrammedNode {
			return invalid("programmed policies[%d]: message over %d bytes or node over %d", i, MaxProgrammedMessage, maxProgrammedNode)
		}
		if i > 0 && ComparePolicyRefs(p.Policies[i-1].Ref, r) >= 0 {
			return invalid("programmed policies are not sorted by ref, or list one twice (%s)", r)
		}
	}
	return nil
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut with "…".
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
