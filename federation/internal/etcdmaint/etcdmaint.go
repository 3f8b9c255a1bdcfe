package etcdmaint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
)

// Client is what the Maintainer needs of etcd: the maintenance calls and two of
// KV's. *clientv3.Client satisfies it.
type Client interface {
	Status(ctx context.Context, endpoint string) (*clientv3.StatusResponse, error)
	Defragment(ctx context.Context, endpoint string) (*clientv3.DefragmentResponse, error)
	AlarmList(ctx context.Context) (*clientv3.AlarmResponse, error)
	AlarmDisarm(ctx context.Context, m *clientv3.AlarmMember) (*clientv3.AlarmResponse, error)
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
	Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error)
}

// EventRecorder records Kubernetes Events; controller-runtime's
// manager.GetEventRecorder returns one.
type EventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Defaults of Options.
const (
	DefaultCheckInterval      = 30 * time.Second
	DefaultDefragMinFreeBytes = 100 << 20 // 5% of etcd's default quota
	DefaultDefragMinRatio     = 0.5
	DefaultRequestTimeout     = 30 * time.Second
	DefaultDefragTimeout      = 5 * time.Minute
)

// Options configure a Maintainer. Client and Endpoints are required.
type Options struct {
	// Client reaches etcd as its root user.
	Client Client
	// Endpoints are the client URLs of every member: each is checked and
	// defragmented on its own. A load balancer in front of several members
	// would defragment a random one; list the members instead.
	Endpoints []string

	// CompactInterval, when set, has the Maintainer compact every interval to
	// the revision it saw one interval earlier. Default 0: never; for an
	// embedded etcd, which compacts itself.
	CompactInterval time.Duration
	// CheckInterval is how often the Maintainer reads status and alarms and
	// acts on them. It bounds how long a NOSPACE alarm lasts before recovery
	// starts. Default DefaultCheckInterval (30s).
	CheckInterval time.Duration

	// DefragMinFreeBytes and DefragMinRatio: an endpoint is defragmented when
	// its free pages (database size minus size in use) are at least
	// DefragMinFreeBytes and at least DefragMinRatio of the database. Both
	// must hold: a small database is not worth stopping a member for, and a
	// large one with a little free space reuses it for new writes anyway.
	// Defaults DefaultDefragMinFreeBytes (100 MiB) and DefaultDefragMinRatio
	// (0.5).
	DefragMinFreeBytes int64
	DefragMinRatio     float64

	// QuotaHeadroom is the share of the quota that must be free after NOSPACE
	// recovery for the alarm to be disarmed. Default 0.05.
	QuotaHeadroom float64

	// RequestTimeout bounds each status, alarm and compaction call; default
	// 30s. DefragTimeout bounds one endpoint's defragmentation, which takes
	// time proportional to its live data; default 5m.
	RequestTimeout time.Duration
	DefragTimeout  time.Duration

	// Recorder and Regarding: Events about the store (NOSPACE, recovery,
	// defragmentation, quota pressure) are recorded about Regarding. Default:
	// no Events (logs and metrics only).
	Recorder  EventRecorder
	Regarding runtime.Object

	// Clock drives the intervals. Default the real clock.
	Clock clock.WithTicker
	// Logger receives one line per action and per failure.
	Logger logr.Logger
}

func (o *Options) setDefaults() error {
	if o.Client == nil || len(o.Endpoints) == 0 {
		return errors.New("etcdmaint: Options.Client and Options.Endpoints are required")
	}
	if o.CompactInterval < 0 {
		return fmt.Errorf("etcdmaint: CompactInterval %s is negative", o.CompactInterval)
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.DefragMinFreeBytes <= 0 {
		o.DefragMinFreeBytes = DefaultDefragMinFreeBytes
	}
	if o.DefragMinRatio <= 0 {
		o.DefragMinRatio = DefaultDefragMinRatio
	}
	if o.DefragMinRatio >= 1 {
		return fmt.Errorf("etcdmaint: DefragMinRatio %g must be below 1", o.DefragMinRatio)
	}
	if o.QuotaHeadroom <= 0 {
		o.QuotaHeadroom = 0.05
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.DefragTimeout <= 0 {
		o.DefragTimeout = DefaultDefragTimeout
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Recorder != nil && o.Regarding == nil {
		return errors.New("etcdmaint: Options.Recorder needs Options.Regarding")
	}
	return nil
}

// Maintainer is a manager Runnable that maintains the hub's etcd.
type Maintainer struct {
	opts Options
	log  logr.Logger

	// seen is the revision observed at the previous compaction tick: the next
	// tick compacts to it. Only the Start goroutine touches it.
	seen int64
	// pressured remembers that a quota-pressure Event was recorded, so one is
	// recorded per episode rather than per check.
	pressured bool
}

// New returns a Maintainer; it does nothing until Start.
func New(opts Options) (*Maintainer, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	return &Maintainer{opts: opts, log: opts.Logger}, nil
}

// NeedLeaderElection is true: only the leading hub replica maintains etcd, so two
// replicas never defragment members at once.
func (m *Maintainer) NeedLeaderElection() bool { return true }

// Start runs the maintenance loop until ctx is done. It checks at once, so a hub
// that starts on an etcd in NOSPACE recovers it without waiting an interval.
func (m *Maintainer) Start(ctx context.Context) error {
	m.log.Info("etcd maintenance started", "endpoints", m.opts.Endpoints, "compactInterval", m.opts.CompactInterval.String(),
		"checkInterval", m.opts.CheckInterval.String())
	check := m.opts.Clock.NewTicker(m.opts.CheckInterval)
	defer check.Stop()
	var compactC <-chan time.Time
	if m.opts.CompactInterval > 0 {
		t := m.opts.Clock.NewTicker(m.opts.CompactInterval)
		defer t.Stop()
		compactC = t.C()
	}
	m.logErr(m.Check(ctx), "etcd maintenance check failed")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-check.C():
			m.logErr(m.Check(ctx), "etcd maintenance check failed")
		case <-compactC:
			m.logErr(m.CompactTick(ctx), "etcd compaction failed")
		}
	}
}

func (m *Maintainer) logErr(err error, msg string) {
	if err != nil && !errors.Is(err, context.Canceled) {
		m.log.Error(err, msg)
	}
}

func (m *Maintainer) event(eventtype, reason, action, note string, args ...any) {
	if m.opts.Recorder != nil {
		m.opts.Recorder.Eventf(m.opts.Regarding, nil, eventtype, reason, action, note, args...)
	}
}

// call runs f with the request timeout.
func (m *Maintainer) call(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f(ctx)
}
