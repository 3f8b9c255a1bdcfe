package eastwest

// ListenerName is the xDS Listener a meshfed east-west gateway asks its cluster's
// agent for: filter chains matching server names (SNI), each passing the stream to a
// cluster of local endpoints (tcp_proxy). FromXDS reads it.
const ListenerName = "meshfed-eastwest"

// DefaultPort is where east-west gateways listen (Istio's convention).
const DefaultPort = 15443
