package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/internal/dev/echo"
)

func devEchoCommand() *cobra.Command {
	var (
		servers   []string
		certDir   string
		xdsServer string
		locality  string
	)
	cmd := &cobra.Command{
		Use:    "echo --serve ADDR=ID [--serve …] [--cert-dir DIR] [--xds-server ADDR --locality REGION/ZONE]",
		Short:  "Run gRPC echo backends that answer with their identity (for the sandbox and the demo)",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			region, zone, _ := strings.Cut(locality, "/")
			if xdsServer != "" && (region == "" || zone == "") {
				return fmt.Errorf("--locality %q: use REGION/ZONE, the backends' locality (with --xds-server)", locality)
			}
			opts := []grpc.ServerOption{}
			if certDir != "" && xdsServer == "" {
				creds, err := mtlsCreds(certDir)
				if err != nil {
					return err
				}
				opts = append(opts, grpc.Creds(creds))
			}
			for _, spec := range servers {
				addr, id, ok := strings.Cut(spec, "=")
				if !ok {
					return fmt.Errorf("--serve %q: use ADDR=ID", spec)
				}
				l, err := net.Listen("tcp", addr)
				if err != nil {
					return err
				}
				if xdsServer != "" {
					if _, err := echo.ServeXDS(l, id, echo.Proxy{XDSServer: xdsServer, NodeID: "echo-" + addr,
						Region: region, Zone: zone, CertDir: certDir}); err != nil {
						return err
					}
					continue
				}
				s := grpc.NewServer(opts...)
				echo.Register(s, id)
				go s.Serve(l) //nolint:errcheck // runs until the process ends
			}
			ctx, stop := cmdutil.SignalContext()
			defer stop()
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&servers, "serve", nil, "ADDR=ID: serve on ADDR, answering with ID (repeatable)")
	cmd.Flags().StringVar(&certDir, "cert-dir", "", "serve mTLS with DIR/{tls.crt,tls.key,ca.crt}, requiring client certificates")
	cmd.Flags().StringVar(&xdsServer, "xds-server", "", "serve as proxyless gRPC xDS servers of the agent at ADDR: its Listener decides the mTLS (with --cert-dir's certificate) and the authorization")
	cmd.Flags().StringVar(&locality, "locality", "", "REGION/ZONE of the backends, for the agent (with --xds-server)")
	return cmd
}

// mtlsCreds serves mTLS with DIR/{tls.crt,tls.key,ca.crt}, read again at every
// handshake, as a file_watcher certificate provider would: renewed certificates and a
// rotated bundle take effect without a restart.
func mtlsCreds(dir string) (credentials.TransportCredentials, error) {
	load := func() (*tls.Config, error) {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if err != nil {
			return nil, err
		}
		ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("%s/ca.crt: no certificate", dir)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2"}}, nil // the base config's ALPN does not carry over
	}
	if _, err := load(); err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return load() }}), nil
}
