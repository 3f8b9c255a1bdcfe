package eastwest

import (
	"strconv"
	"testing"

	"github.com/meshfed/meshfed/internal/xdsnames"
)

// DefaultAddress must be a constant for flags, so it spells the port again: keep it
// equal to the one definition the agent's xDS uses.
func TestDefaultAddressIsTheGatewayPort(t *testing.T) {
	if want := ":" + strconv.Itoa(xdsnames.GatewayPort); DefaultAddress != want {
		t.Fatalf("DefaultAddress = %q, want %q (xdsnames.GatewayPort)", DefaultAddress, want)
	}
}
