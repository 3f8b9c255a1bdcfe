// Package e2e holds meshfed's end-to-end tests: a whole federation on this machine
// (package sandbox: real kube-apiservers and etcd, the hub and the agents as real
// `meshfed` processes), driven the way an operator and the Kubernetes controllers
// would drive it, and checked from the outside: the hub's API, the agents' debug view,
// and etcd itself.
package e2e
