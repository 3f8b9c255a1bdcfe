package model

// MemberPort is the member Service's port that serves global port gp: the port of the
// same name, or of the same number when gp has no name. It is the one definition of
// which port serves a global port: a cluster whose Service has no such port (a port
// renamed in one cluster) serves nothing of gp, and every reader (the agents' xDS,
// failover explain, the hub's status) must agree on that.
func MemberPort(s *ServiceEndpoints, gp GlobalPort) (ServicePort, bool) {
	for _, p := range s.Ports {
		if (gp.Name != "" && p.Name == gp.Name) || (gp.Name == "" && p.Port == gp.Port) {
			return p, true
		}
	}
	return ServicePort{}, false
}

// PortOf is the port endpoint e serves the member Service port sp on.
func PortOf(e Endpoint, sp ServicePort) (uint32, bool) {
	for _, p := range e.Ports {
		if p.Name == sp.Name {
			return uint32(p.Port), true
		}
	}
	return 0, false
}
