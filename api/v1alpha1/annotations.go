package v1alpha1

// ServiceAccountsAnnotation, on a member cluster's Service, names the Kubernetes
// service accounts (comma-separated, in the Service's namespace) its endpoints run
// as, instead of the accounts of the pods behind its EndpointSlices: for endpoints
// that are not pods, or clusters whose agent may not read pods. With the cluster's
// identity domain they are the identities clients accept as the Service's servers.
const ServiceAccountsAnnotation = "meshfed.io/service-accounts"
