// Package echo is the backend meshfed's tests and sandbox route to: a gRPC server that
// answers grpc.testing.TestService/UnaryCall (grpc-go's interop service) with its own
// identity, e.g. "alpha/us-east-a/10.250.3.2:8080", so a client can tell where each
// request landed.
package echo

import (
	"context"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

type server struct {
	testgrpc.UnimplementedTestServiceServer
	id string
}

func (s server) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: s.id, Hostname: s.id}, nil
}

func (s server) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// Register adds the echo service, answering with id, to s.
func Register(s grpc.ServiceRegistrar, id string) {
	testgrpc.RegisterTestServiceServer(s, server{id: id})
}

// Call sends one request and returns the identity of the server that answered.
func Call(ctx context.Context, conn grpc.ClientConnInterface) (string, error) {
	resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{FillServerId: true})
	if err != nil {
		return "", err
	}
	return resp.GetServerId(), nil
}
