package trustcheck

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/meshfed/meshfed/trust"
)

// CertResult is the verdict on one workload certificate chain (`trust check
// --cert`).
type CertResult struct {
	// Source names the chain (its file).
	Source string `json:"source"`
	// Identity is the leaf's URI SAN; "" when it has not exactly one.
	Identity string `json:"identity"`
	// Cluster is the member cluster whose intermediate issued the leaf, when the
	// chain verified that far.
	Cluster string `json:"cluster,omitempty"`
	OK      bool   `json:"ok"`
	// Detail: "ok, under <root>", or why the chain is refused.
	Detail string `json:"detail"`
}

// CheckCert verifies chainPEM (a leaf, then its intermediates) at now against
// bundlePEM, as any mesh peer does: it must chain to a root of the bundle within
// every intermediate's name constraints, and its identity must be in the identity
// domain of the cluster whose intermediate issued it (trust.VerifyAt). The identity
// checked is the one the leaf carries.
func CheckCert(source string, chainPEM, bundlePEM []byte, names Roots, now time.Time) CertResult {
	r := CertResult{Source: source}
	certs, err := trust.ParseCertificates(chainPEM)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	if len(certs[0].URIs) != 1 {
		r.Detail = fmt.Sprintf("the leaf has %d URI SANs %v; a workload certificate carries exactly one SPIFFE ID", len(certs[0].URIs), certs[0].URIs)
		return r
	}
	r.Identity = certs[0].URIs[0].String()
	v, err := trust.VerifyAt(chainPEM, bundlePEM, r.Identity, now)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	r.Cluster, r.OK = v.Cluster, true
	r.Detail = "ok, issued by cluster " + v.Cluster + "'s intermediate, under " + names.Name(v.Root)
	return r
}

// CertVerdict is nil only when there is a result and every one is OK.
func CertVerdict(results []CertResult) error {
	if len(results) == 0 {
		return errors.New("trust check verified no certificate")
	}
	failed := 0
	for _, r := range results {
		if !r.OK {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("trust check failed: %d of %d certificates do not verify", failed, len(results))
	}
	return nil
}

// PrintCerts writes certificate results as a table.
func PrintCerts(w io.Writer, results []CertResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tIDENTITY\tOK\tDETAIL")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\n", r.Source, r.Identity, r.OK, r.Detail)
	}
	return tw.Flush()
}
