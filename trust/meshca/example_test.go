package meshca_test

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/rest"

	"github.com/meshfed/meshfed/trust"
	"github.com/meshfed/meshfed/trust/certmanager"
	"github.com/meshfed/meshfed/trust/meshca"
)

// The hub's side of trust: cert-manager in-process, the root once, an intermediate
// per member cluster from the CSR the cluster sent, and the bundle to publish.
func Example() {
	ctx := context.Background()
	var hub *rest.Config // the hub's API server
	var csrFromMember []byte

	cm, err := certmanager.Run(ctx, hub, certmanager.Options{})
	if err != nil {
		panic(err)
	}
	defer func() { <-cm.Done() }()

	c, err := meshca.NewClient(hub)
	if err != nil {
		panic(err)
	}
	if _, err := meshca.EnsureRoot(ctx, c, meshca.RootOptions{TrustDomain: "mesh.example.org"}); err != nil {
		panic(err)
	}
	chain, err := meshca.SignIntermediate(ctx, c, "alpha", csrFromMember, 0)
	if err != nil {
		panic(err) // errors.Is(err, trust.ErrWrongCluster) when alpha sent another cluster's CSR
	}
	expiry, _ := trust.IntermediateExpiry(chain) // for MeshCluster status
	bundle, err := meshca.Bundle(ctx, c)         // for /meshfed/v1/trust/bundle
	if err != nil {
		panic(err)
	}
	fmt.Println(expiry.Sub(time.Now()) > 0, len(bundle) > 0)
}
