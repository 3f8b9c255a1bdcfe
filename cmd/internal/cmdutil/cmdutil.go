package cmdutil

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// LogOptions are the logging flags.
type LogOptions struct {
	Format    string
	Verbosity int
}

// AddFlags registers --log-format and -v.
func (o *LogOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Format, "log-format", "json", "log format: json or text")
	fs.IntVarP(&o.Verbosity, "v", "v", 0, "log verbosity: 0 is info, higher is more detail")
}

// Logger builds the logger and makes it controller-runtime's and klog's too.
func (o *LogOptions) Logger() (logr.Logger, error) {
	var enc zap.Opts
	switch o.Format {
	case "json":
		enc = zap.JSONEncoder()
	case "text":
		enc = zap.ConsoleEncoder()
	default:
		return logr.Logger{}, fmt.Errorf("--log-format %q: use json or text", o.Format)
	}
	log := zap.New(enc, zap.Level(zapcore.Level(-o.Verbosity)), zap.WriteTo(os.Stderr))
	ctrl.SetLogger(log)
	return log, nil
}

// RESTConfig loads a kubeconfig file, or the in-cluster config when path is empty.
func RESTConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %q: %w", path, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// SignalContext is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
