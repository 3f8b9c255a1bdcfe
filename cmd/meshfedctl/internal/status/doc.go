// Package status reports the federation as the hub sees it, for `meshfedctl cluster
// list` and `meshfedctl status`: one row per cluster with its conditions, heartbeat
// age and counts, and one per global service.
package status
