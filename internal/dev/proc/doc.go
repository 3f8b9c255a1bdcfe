// Package proc runs child processes that never outlive their owner: each in its own
// process group, killed by the kernel when the owning process dies (Pdeathsig), and
// stopped as a whole group.
//
// localkube runs etcd and kube-apiserver with it, the sandbox runs the hub and the
// agents. Output goes to a log file that Failure quotes when a process dies early.
package proc
