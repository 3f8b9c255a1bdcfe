//go:build meshfedtesthooks

package clusteragent

import (
	"fmt"
	"net/http"

	"github.com/meshfed/meshfed/internal/etcd/view"
)

// Binaries built with the meshfedtesthooks tag (tests only) serve
// POST /debug/fault/drop?key=<store key>: the key's record leaves the agent's view as
// a bug would take it, unknown to the import (view.DropForTest).
func init() {
	debugHooks = append(debugHooks, func(mux *http.ServeMux, v *view.View) {
		mux.HandleFunc("POST /debug/fault/drop", func(w http.ResponseWriter, r *http.Request) {
			key := r.URL.Query().Get("key")
			if !v.DropForTest(key) {
				http.Error(w, fmt.Sprintf("the view holds no record at %q", key), http.StatusNotFound)
				return
			}
			fmt.Fprintf(w, "dropped %s\n", key)
		})
	})
}
