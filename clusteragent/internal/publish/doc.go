// Package publish is the part of the agent that turns a member cluster's Services,
// EndpointSlices, Nodes and MCS ServiceExports into the cluster's service records in
// the hub's etcd (keyspace.ServiceEndpoints, values model.ServiceEndpoints).
//
// Two pure functions decide everything: Exporters says whether and why a Service is
// exported (a GlobalService on the hub selects it, or a ServiceExport names it), and
// Build turns an exported Service, its EndpointSlices and its nodes' zones into the
// record. A Publisher feeds them from client-go informers and hands the results to a
// Sink (in the agent, a kvstore.Writer), reading the hub's state from a View.
//
// # How a Publisher works
//
// Run starts informers for Services, EndpointSlices (only those labelled
// kubernetes.io/service-name), Nodes (only name and zone are kept), Pods that have not
// finished (only name, service account and labels are kept) and, when the cluster serves
// multicluster.x-k8s.io/v1alpha1, ServiceExports. Once every cache is
// synced and View.WaitSynced has returned, it makes a first pass: every exported
// Service is upserted, and every key of View.PublishedServices that is not exported
// now is deleted (a restarted agent thereby prunes what it stopped exporting while it
// was down). Then it calls Sink.MarkSynced. After that, events enqueue the affected
// Service, and one worker recomputes it: upsert if exported, delete if it was
// published and is not any more. A Node whose zone label changes re-evaluates only the
// Services with an endpoint that takes its zone from that node; a Pod whose labels
// change, the Services with an endpoint on it (records carry the labels LabelKeys
// names: DefaultEndpointLabels and the keys the view's TrafficPolicies' subsets select
// by, when the View has TrafficPolicies). GlobalServicesChanged,
// and a timer every Options.ResyncPeriod, enqueue a full pass like the first.
//
// # Invariants
//
//   - Nothing is published before the informer caches and the view are synced, and
//     Sink.MarkSynced is called exactly once, after the first pass has handed every
//     upsert and delete to the Sink.
//   - The Publisher deletes only keys under its own cluster's services prefix
//     (keyspace.ClusterServices(Options.Cluster)); a key the View lists outside it is
//     logged and left alone. It never writes any other key.
//   - Level-based: every pass recomputes from the caches, whatever events led to it,
//     so a missed or merged event costs nothing but latency.
//   - Output is deterministic: equal inputs give byte-identical values, so the writer
//     skips unchanged ones; the Publisher itself hands the Sink only values that
//     changed since it last handed them.
//   - Sink calls come from one goroutine at a time (Run's, then the worker's), in the
//     order the decisions were made.
//   - A missing ServiceExport API is not an error: it is logged once and ServiceExports
//     count as absent.
//
// # Who may call what
//
// New, then Run once. GlobalServicesChanged is safe from any goroutine at any time.
// Exporters and Build are pure and safe anywhere.
//
// # Metrics
//
// Registered by RegisterMetrics with the agent's own registry, all labelled by cluster:
// meshfed_agent_exported_services, meshfed_agent_published_endpoints,
// meshfed_agent_publish_operations_total{op="upsert"|"delete"},
// meshfed_agent_publish_errors_total{reason="encode"|"discovery"|"bad_key"|"annotation"}; and the
// work queue's, named "publish-<cluster>".
package publish
