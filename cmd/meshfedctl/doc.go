// Command meshfedctl is meshfed's operator CLI: register clusters, show the
// federation's status, and run a local sandbox federation.
package main
