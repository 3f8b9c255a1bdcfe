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
		servers []string
		certDir string
	)
	cmd := &cobra.Command{
		Use:    "echo --serve ADDR=ID [--serve …] [--cert-dir DIR]",
		Short:  "Run gRPC echo backends that answer with their identity (for the sandbox and the demo)",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			opts := []grpc.ServerOption{}
			if certDir != "" {
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
	return cmd
}

func mtlsCreds(dir string) (credentials.TransportCredentials, error) {
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
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}), nil
}
