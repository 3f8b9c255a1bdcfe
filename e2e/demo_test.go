package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/dev/demo"
)

// TestDemo plays make demo's story: its steady phases must have zero failed requests
// and every request where the policy sends it; in act two, the canary's share within
// its tolerance, every call of the caller the AuthorizationPolicy leaves out refused
// with PERMISSION_DENIED (counted apart from failures), none of the allowed one's,
// and policy explain's verdicts agreeing (demo.Run fails otherwise).
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := demo.Run(ctx, demo.Options{Dir: t.TempDir(), MeshfedBinary: meshfedBin(), Meshfedctl: meshfedctlBin(), EchoCommand: []string{meshfedctlBin(), "dev", "echo"}, Out: &out, Requests: 100})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{"canary, 10% to beta", "alpha's frontend, allowed", "beta's frontend, denied", "steady, policies deleted"} {
		if !strings.Contains(out.String(), "\n"+row+" ") {
			t.Errorf("the demo's table has no row %q", row)
		}
	}
}
