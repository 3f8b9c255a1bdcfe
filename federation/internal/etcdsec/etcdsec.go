package etcdsec

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

// RootUser is etcd's administrator, the hub.
const RootUser = "root"

// Auth is the part of clientv3.Auth this package uses.
type Auth interface {
	AuthEnable(ctx context.Context) (*clientv3.AuthEnableResponse, error)
	AuthStatus(ctx context.Context) (*clientv3.AuthStatusResponse, error)
	UserAddWithOptions(ctx context.Context, name, password string, opt *clientv3.UserAddOptions) (*clientv3.AuthUserAddResponse, error)
	UserGrantRole(ctx context.Context, user, role string) (*clientv3.AuthUserGrantRoleResponse, error)
	UserGet(ctx context.Context, name string) (*clientv3.AuthUserGetResponse, error)
	UserList(ctx context.Context) (*clientv3.AuthUserListResponse, error)
	UserDelete(ctx context.Context, name string) (*clientv3.AuthUserDeleteResponse, error)
	RoleAdd(ctx context.Context, name string) (*clientv3.AuthRoleAddResponse, error)
	RoleGet(ctx context.Context, role string) (*clientv3.AuthRoleGetResponse, error)
	RoleGrantPermission(ctx context.Context, name, key, rangeEnd string, permType clientv3.PermissionType) (*clientv3.AuthRoleGrantPermissionResponse, error)
	RoleDelete(ctx context.Context, role string) (*clientv3.AuthRoleDeleteResponse, error)
}

var _ Auth = clientv3.Auth(nil)

// EnableAuth makes sure the root user exists with the root role and that
// authentication is on.
func EnableAuth(ctx context.Context, a Auth) error {
	status, err := a.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("etcd auth status: %w", err)
	}
	if status.Enabled {
		return nil
	}
	if err := ensureUser(ctx, a, RootUser, RootUser); err != nil {
		return err
	}
	if _, err := a.AuthEnable(ctx); err != nil {
		return fmt.Errorf("enable etcd auth: %w", err)
	}
	return nil
}

// EnsureCluster makes sure the cluster's role may write its own heartbeat, synced
// marker, services, intermediate CSR and etcd-certificate CSR, and read the whole
// keyspace; that the user of its registration (hubinfo.EtcdUser) exists with that
// role; and that no other user of the cluster does: certificates of every earlier
// registration are refused from then on. Registration "" is a cluster registered
// before registrations existed, whose user is named like its role.
func EnsureCluster(ctx context.Context, a Auth, cluster, registration string) error {
	if err := keyspace.ValidateCluster(cluster); err != nil {
		return err
	}
	if registration != "" {
		if err := hubinfo.ValidateRegistration(registration); err != nil {
			return err
		}
	}
	role := hubinfo.EtcdRole(cluster)
	if _, err := a.RoleAdd(ctx, role); err != nil && !isExists(err) {
		return fmt.Errorf("add etcd role %s: %w", role, err)
	}
	// The agent writes its heartbeat, its synced marker and its services, never its
	// registration record (keyspace.ClusterInfo), which the hub owns.
	rw, read := clientv3.PermissionType(authpb.READWRITE), clientv3.PermissionType(authpb.READ)
	grants := []struct {
		key, end string
		perm     clientv3.PermissionType
	}{
		{keyspace.ClusterHeartbeat(cluster), "", rw},
		{keyspace.ClusterSynced(cluster), "", rw},
		{keyspace.ClusterIntermediateCSR(cluster), "", rw},
		// The renewal CSR of its own etcd certificate; the answer (ClusterEtcdCert) is
		// the hub's, or an agent could pick its own certificate.
		{keyspace.ClusterEtcdCSR(cluster), "", rw},
		// Its report on the policies its proxies took or refused.
		{keyspace.ClusterProgrammed(cluster), "", rw},
		{keyspace.ClusterServices(cluster), clientv3.GetPrefixRangeEnd(keyspace.ClusterServices(cluster)), rw},
		{keyspace.Root, clientv3.GetPrefixRangeEnd(keyspace.Root), read},
	}
	got, err := a.RoleGet(ctx, role)
	if err != nil {
		return fmt.Errorf("get etcd role %s: %w", role, err)
	}
	for _, g := range grants {
		if hasPerm(got.Perm, g.key, g.end, authpb.Permission_Type(g.perm)) {
			continue
		}
		if _, err := a.RoleGrantPermission(ctx, role, g.key, g.end, g.perm); err != nil {
			return fmt.Errorf("grant etcd role %s on %s: %w", role, g.key, err)
		}
	}
	user := hubinfo.EtcdUser(cluster, registration)
	if err := ensureUser(ctx, a, user, role); err != nil {
		return err
	}
	return deleteUsers(ctx, a, cluster, user)
}

// RemoveCluster deletes every user of the cluster (every registration's) and its
// role: etcd refuses the cluster's certificates from then on, and the hub's Guard ends
// their open streams. Its keys stay; the hub deletes them separately.
func RemoveCluster(ctx context.Context, a Auth, cluster string) error {
	if err := deleteUsers(ctx, a, cluster, ""); err != nil {
		return err
	}
	role := hubinfo.EtcdRole(cluster)
	if _, err := a.RoleDelete(ctx, role); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete etcd role %s: %w", role, err)
	}
	return nil
}

// deleteUsers deletes every etcd user of cluster but keep.
func deleteUsers(ctx context.Context, a Auth, cluster, keep string) error {
	users, err := a.UserList(ctx)
	if err != nil {
		return fmt.Errorf("list etcd users: %w", err)
	}
	for _, u := range users.Users {
		if c, _, ok := hubinfo.ParseEtcdUser(u); !ok || c != cluster || u == keep {
			continue
		}
		if _, err := a.UserDelete(ctx, u); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete etcd user %s: %w", u, err)
		}
		usersDeleted.Inc()
	}
	return nil
}

func ensureUser(ctx context.Context, a Auth, user, role string) error {
	if _, err := a.UserAddWithOptions(ctx, user, "", &clientv3.UserAddOptions{NoPassword: true}); err != nil && !isExists(err) {
		return fmt.Errorf("add etcd user %s: %w", user, err)
	}
	if user == RootUser {
		if _, err := a.RoleAdd(ctx, role); err != nil && !isExists(err) {
			return fmt.Errorf("add etcd role %s: %w", role, err)
		}
	}
	got, err := a.UserGet(ctx, user)
	if err != nil {
		return fmt.Errorf("get etcd user %s: %w", user, err)
	}
	for _, r := range got.Roles {
		if r == role {
			return nil
		}
	}
	if _, err := a.UserGrantRole(ctx, user, role); err != nil {
		return fmt.Errorf("grant etcd role %s to %s: %w", role, user, err)
	}
	return nil
}

func hasPerm(perms []*authpb.Permission, key, end string, typ authpb.Permission_Type) bool {
	for _, p := range perms {
		if string(p.Key) == key && string(p.RangeEnd) == end && p.PermType == typ {
			return true
		}
	}
	return false
}

func isExists(err error) bool {
	return errors.Is(err, rpctypes.ErrUserAlreadyExist) || errors.Is(err, rpctypes.ErrRoleAlreadyExist)
}

func isNotFound(err error) bool {
	return errors.Is(err, rpctypes.ErrUserNotFound) || errors.Is(err, rpctypes.ErrRoleNotFound)
}
