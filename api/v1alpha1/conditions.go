package v1alpha1

// Condition types and reasons of meshfed's objects: the one place they are spelled.
// Conditions are []metav1.Condition, stamped with the object's generation; the hub
// writes them and meshfedctl reads them, both through these names.
const (
	// ConditionAccepted (GlobalService, FailoverPolicy, TrafficPolicy,
	// AuthorizationPolicy): the object is valid and the hub has written it to etcd.
	ConditionAccepted = "Accepted"
	// ConditionResolvedRefs (GlobalService, FailoverPolicy, TrafficPolicy,
	// AuthorizationPolicy): every object, cluster and locality this one names exists.
	ConditionResolvedRefs = "ResolvedRefs"
	// ConditionProgrammed (TrafficPolicy, AuthorizationPolicy): every cluster's
	// proxies took the policy's current generation (status.clusters says which did
	// not, and why). Unknown (NotReported) until agents report it.
	ConditionProgrammed = "Programmed"

	// ConditionRegistered (MeshCluster): the hub has written the cluster's
	// registration and credentials.
	ConditionRegistered = "Registered"
	// ConditionConnected (MeshCluster): the cluster's agent holds a live heartbeat lease.
	ConditionConnected = "Connected"
	// ConditionSynced (MeshCluster): the cluster's agent has completed its initial publish.
	ConditionSynced = "Synced"
	// ConditionIntermediateCA (MeshCluster): the cluster's intermediate CA is signed
	// and not due for renewal (reason Expiring when a third or less of its life is
	// left, Expired after it). Set only when the hub runs the mesh CA.
	ConditionIntermediateCA = "IntermediateCA"
	// ConditionCredentialsValid (MeshCluster): the agent's etcd client certificate,
	// as the hub last signed it, is valid and not overdue for renewal (reason
	// Expiring when a quarter or less of its life is left: the agent renews at a
	// third; Expired after it; Unknown/Pending until the hub has signed one through
	// etcd, which the agent asks for when it starts).
	ConditionCredentialsValid = "CredentialsValid"

	// ConditionViewInSync (MeshCluster): the view the cluster's agent imports and
	// serves equals the hub's store, as of the revision the agent last reported (a
	// digest of every key and its ModRevision, compared with the hub's own at that
	// revision). False means the agent served something else; it resyncs by itself.
	ConditionViewInSync = "ViewInSync"

	// ConditionPublishedDataValid (MeshCluster): the hub's own reader accepts every
	// record the cluster publishes. False names a reason of view.Rejection (e.g.
	// AddressOutOfRange, UndeclaredZone, UnauthorizedService, TooManyEndpoints) and
	// one example: the key, what in it was refused and how many were. Agents refuse
	// the same records: what is refused contributes nothing to any service.
	ConditionPublishedDataValid = "PublishedDataValid"

	// ConditionHostnameConflict (GlobalService): True when an older GlobalService
	// (by creationTimestamp, then namespace/name) claims the same hostname. The
	// conflicting one is not written to etcd, so no client is sent to it; it takes the
	// hostname over when the owner goes. Unlike the others, True is the problem.
	ConditionHostnameConflict = "HostnameConflict"
)

// Reasons of Accepted and Registered.
const (
	// ReasonAccepted: Accepted is True.
	ReasonAccepted = "Accepted"
	// ReasonRegistered: Registered is True.
	ReasonRegistered = "Registered"
	// ReasonEtcdError: the hub could not write the object to its etcd.
	ReasonEtcdError = "EtcdError"
	// ReasonRevoked: Registered is False because the cluster was revoked
	// (MeshCluster spec.revoked): its etcd user and records are deleted until it is
	// registered again. Also the reason of the Warning Event when it happens.
	ReasonRevoked = "Revoked"
	// ReasonInvalid: Accepted is False because the object holds what the hub cannot
	// serve though the schema allows it (a regular expression RE2 does not parse);
	// the message names the field.
	ReasonInvalid = "Invalid"
	// ReasonConflicted: Accepted is False because another TrafficPolicy of the same
	// global service comes first by name: only that one is served.
	ReasonConflicted = "Conflicted"
)

// Reasons of Programmed.
const (
	// ReasonNotReported: Programmed is Unknown, no connected cluster reports on the
	// policy (no proxy there uses the resources it shapes, or the policy is not
	// written to etcd).
	ReasonNotReported = "NotReported"
	// ReasonProgrammed: every connected cluster that reports on the policy says its
	// proxies took the current generation.
	ReasonProgrammed = "Programmed"
	// ReasonRefused: a proxy of some cluster NACKed a resource the current generation
	// shaped; the message names the clusters and the proxies' errors.
	ReasonRefused = "Refused"
	// ReasonPending: some cluster's proxies have not ACKed the current generation yet.
	ReasonPending = "Pending"
)

// Reasons of PublishedDataValid, besides the rejection reasons of the readers.
const (
	// ReasonPublishedDataValid: PublishedDataValid is True.
	ReasonPublishedDataValid = "Valid"
)

// Reasons of HostnameConflict (and of Accepted=False for the GlobalService that lost).
const (
	// ReasonHostnameUnique: HostnameConflict is False, the GlobalService owns its hostname.
	ReasonHostnameUnique = "Unique"
	// ReasonHostnameInUse: HostnameConflict is True (and Accepted False): an older
	// GlobalService owns the hostname.
	ReasonHostnameInUse = "HostnameInUse"
)

// Reasons of ResolvedRefs.
const (
	// ReasonResolvedRefs: ResolvedRefs is True.
	ReasonResolvedRefs = "ResolvedRefs"
	// ReasonPolicyNotFound: a GlobalService names a FailoverPolicy that does not exist.
	ReasonPolicyNotFound = "PolicyNotFound"
	// ReasonGlobalServiceNotFound: a TrafficPolicy or AuthorizationPolicy names a
	// GlobalService that does not exist.
	ReasonGlobalServiceNotFound = "GlobalServiceNotFound"
	// ReasonUnknownCluster: a FailoverPolicy's failover rules, a TrafficPolicy's
	// subsets or an AuthorizationPolicy's sources name clusters that are not
	// registered.
	ReasonUnknownCluster = "UnknownCluster"
	// ReasonUnmatchedLocality: a FailoverPolicy rule names a region or locality
	// pattern that no registered cluster is in, so the rule applies to no client or
	// sends traffic nowhere. When clusters are unknown too, ReasonUnknownCluster wins
	// and the message names both.
	ReasonUnmatchedLocality = "UnmatchedLocality"
)

// Reasons of Connected.
const (
	// ReasonHeartbeatLive: Connected is True.
	ReasonHeartbeatLive = "HeartbeatLive"
	// ReasonNoHeartbeat: the agent has never written a heartbeat.
	ReasonNoHeartbeat = "NoHeartbeat"
	// ReasonHeartbeatLapsed: the agent's heartbeat lease expired.
	ReasonHeartbeatLapsed = "HeartbeatLapsed"
)

// Reasons of Synced.
const (
	// ReasonSynced: Synced is True.
	ReasonSynced = "Synced"
	// ReasonNotSynced: the agent has not completed its initial publish.
	ReasonNotSynced = "NotSynced"
)

// Reasons of IntermediateCA.
const (
	// ReasonIntermediateValid: IntermediateCA is True.
	ReasonIntermediateValid = "Valid"
	// ReasonIntermediatePending: the agent's CSR waits for the mesh CA.
	ReasonIntermediatePending = "Pending"
	// ReasonIntermediateInvalid: the published chain does not parse.
	ReasonIntermediateInvalid = "Invalid"
	// ReasonIntermediateExpiring: due for renewal and not renewed.
	ReasonIntermediateExpiring = "Expiring"
	// ReasonIntermediateExpired: expired; workload certificates can no longer be issued.
	ReasonIntermediateExpired = "Expired"
)

// Reasons of CredentialsValid.
const (
	// ReasonCredentialsValid: CredentialsValid is True.
	ReasonCredentialsValid = "Valid"
	// ReasonCredentialsPending: the hub has no record of the agent's certificate yet.
	ReasonCredentialsPending = "Pending"
	// ReasonCredentialsExpiring: overdue for renewal; the agent has not renewed it.
	ReasonCredentialsExpiring = "Expiring"
	// ReasonCredentialsExpired: expired; the agent cannot reconnect to the hub's etcd
	// and must be registered again.
	ReasonCredentialsExpired = "Expired"
	// ReasonCredentialsInvalid: the hub's record does not parse.
	ReasonCredentialsInvalid = "Invalid"
)

// Reasons a cluster serves none of a global port's traffic (GlobalServiceStatus.Excluded).
const (
	// ReasonPortNotFound: the cluster's Service has no port of the global port's name
	// (or number, for an unnamed global port), so clients never reach the cluster on it.
	ReasonPortNotFound = "PortNotFound"
)

// Reasons of ViewInSync.
const (
	// ReasonViewInSync: ViewInSync is True.
	ReasonViewInSync = "InSync"
	// ReasonViewDigestMismatch: the agent's digest differs from the store's at the
	// same revision.
	ReasonViewDigestMismatch = "DigestMismatch"
	// ReasonViewNoReport: the agent has reported no digest (not connected, not live
	// yet, or an agent that predates digests).
	ReasonViewNoReport = "NoReport"
	// ReasonViewRevisionCompacted: the store no longer holds the reported revision;
	// the next report decides.
	ReasonViewRevisionCompacted = "RevisionCompacted"
	// ReasonViewCheckFailed: the hub could not read its store to compare.
	ReasonViewCheckFailed = "CheckFailed"
)
