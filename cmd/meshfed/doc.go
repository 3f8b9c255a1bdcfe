// Command meshfed runs meshfed's components: the hub, the agent and the east-west
// gateway.
package main
