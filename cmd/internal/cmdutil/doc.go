// Package cmdutil holds what meshfed's commands share: logging flags, kubeconfig
// loading and signal handling.
package cmdutil
