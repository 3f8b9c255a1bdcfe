package echo

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
)

type server struct {
	testgrpc.UnimplementedTestServiceServer
	id    string
	b     Behaviour
	calls *atomic.Uint64 // UnaryCalls so far
}

// UnaryCall answers with the server's identity in ServerId and, over TLS with a client
// certificate, the client's SPIFFE ID (its first URI SAN) in Hostname.
// It first misbehaves as its Behaviour says (DelayHeader, FailPercent).
func (s server) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if err := misbehave(ctx, s.b, s.calls); err != nil {
		return nil, err
	}
	resp := &testgrpc.SimpleResponse{ServerId: s.id}
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			if uris := info.State.PeerCertificates[0].URIs; len(uris) > 0 {
				resp.Hostname = uris[0].String()
			}
		}
	}
	return resp, nil
}

func (s server) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// Register adds the echo service, answering with id, to s.
func Register(s grpc.ServiceRegistrar, id string) {
	RegisterWith(s, id, Behaviour{})
}

// RegisterWith adds the echo service, answering with id and misbehaving as b says, to s.
func RegisterWith(s grpc.ServiceRegistrar, id string, b Behaviour) {
	testgrpc.RegisterTestServiceServer(s, server{id: id, b: b, calls: &atomic.Uint64{}})
}

// Call sends one request and returns the identity of the server that answered.
func Call(ctx context.Context, conn grpc.ClientConnInterface) (string, error) {
	server, _, err := CallPeer(ctx, conn)
	return server, err
}

// CallPeer sends one request and returns the identity of the server that answered and
// the client identity (SPIFFE ID) the server saw, "" without mTLS.
func CallPeer(ctx context.Context, conn grpc.ClientConnInterface) (server, client string, err error) {
	resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{FillServerId: true})
	if err != nil {
		return "", "", err
	}
	return resp.GetServerId(), resp.GetHostname(), nil
}
