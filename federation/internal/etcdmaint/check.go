package etcdmaint

import (
	"context"
	"errors"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
)

// Event reasons, for `kubectl get events --field-selector reason=…` and alerts.
const (
	ReasonNoSpace          = "EtcdNoSpace"
	ReasonNoSpaceRecovered = "EtcdNoSpaceRecovered"
	ReasonQuotaExhausted   = "EtcdQuotaExhausted"
	ReasonQuotaPressure    = "EtcdQuotaPressure"
	ReasonDefragmented     = "EtcdDefragmented"
	ReasonMaintenanceError = "EtcdMaintenanceFailed"
)

// defaultQuotaBytes is etcd's default quota, assumed for members that do not
// report theirs (etcd before 3.6 leaves StatusResponse.DbSizeQuota at 0).
const defaultQuotaBytes = 2 << 30

// pressureRatio: live data above this share of the quota is reported once per
// episode. Compaction and defragmentation cannot help then; only deleting data or
// a larger quota can.
const pressureRatio = 0.8

// status is one endpoint's answer to Status.
type status struct {
	endpoint string
	*clientv3.StatusResponse
}

func (s status) free() int64 { return s.DbSize - s.DbSizeInUse }

func (s status) quota() int64 {
	if s.DbSizeQuota > 0 {
		return s.DbSizeQuota
	}
	return defaultQuotaBytes
}

func (s status) isLeader() bool { return s.Header != nil && s.Header.MemberId == s.Leader }

// Check is one maintenance pass: read alarms and every endpoint's status, recover
// from NOSPACE if raised, otherwise defragment the endpoints where it pays. It
// returns what failed; what could be done despite a failure is done.
func (m *Maintainer) Check(ctx context.Context) error {
	var alarms []*pb.AlarmMember
	err := m.call(ctx, m.opts.RequestTimeout, func(ctx context.Context) error {
		resp, err := m.opts.Client.AlarmList(ctx)
		if err == nil {
			alarms = resp.Alarms
		}
		return err
	})
	if err != nil {
		checkErrors.WithLabelValues("alarms").Inc()
		return fmt.Errorf("etcdmaint: list alarms: %w", err)
	}
	recordAlarms(alarms)
	if nospace := alarmsOf(alarms, pb.AlarmType_NOSPACE); len(nospace) > 0 {
		return m.recoverNoSpace(ctx, nospace)
	}

	statuses, errs := m.statuses(ctx)
	for i, st := range statuses {
		ratio := float64(st.free()) / float64(max(st.DbSize, 1))
		if st.free() < m.opts.DefragMinFreeBytes || ratio < m.opts.DefragMinRatio {
			continue
		}
		after, err := m.defrag(ctx, st, "fragmented")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		statuses[i] = after
	}
	m.checkPressure(statuses)
	return errors.Join(errs...)
}

// statuses reads every endpoint's status, leader last (the order to defragment
// in: a leader that stops serving may cost the cluster an election), and records
// their metrics. An endpoint that does not answer is left out and reported.
func (m *Maintainer) statuses(ctx context.Context) ([]status, []error) {
	var out []status
	var errs []error
	for _, ep := range m.opts.Endpoints {
		st, err := m.status(ctx, ep)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, st)
	}
	slices.SortStableFunc(out, func(a, b status) int {
		switch {
		case a.isLeader() == b.isLeader():
			return 0
		case a.isLeader():
			return 1
		}
		return -1
	})
	return out, errs
}

func (m *Maintainer) status(ctx context.Context, ep string) (status, error) {
	st := status{endpoint: ep}
	err := m.call(ctx, m.opts.RequestTimeout, func(ctx context.Context) error {
		resp, err := m.opts.Client.Status(ctx, ep)
		st.StatusResponse = resp
		return err
	})
	if err != nil {
		checkErrors.WithLabelValues("status").Inc()
		return st, fmt.Errorf("etcdmaint: status of %s: %w", ep, err)
	}
	dbSize.WithLabelValues(ep).Set(float64(st.DbSize))
	dbSizeInUse.WithLabelValues(ep).Set(float64(st.DbSizeInUse))
	fragmentation.WithLabelValues(ep).Set(float64(st.free()) / float64(max(st.DbSize, 1)))
	quotaBytes.WithLabelValues(ep).Set(float64(st.quota()))
	return st, nil
}

// defrag defragments one endpoint and returns its status after.
func (m *Maintainer) defrag(ctx context.Context, before status, reason string) (status, error) {
	ep := before.endpoint
	m.log.Info("defragmenting etcd member: it serves nothing until done", "endpoint", ep, "reason", reason,
		"dbSize", before.DbSize, "dbSizeInUse", before.DbSizeInUse)
	start := m.opts.Clock.Now()
	err := m.call(ctx, m.opts.DefragTimeout, func(ctx context.Context) error {
		_, err := m.opts.Client.Defragment(ctx, ep)
		return err
	})
	took := m.opts.Clock.Since(start)
	if err != nil {
		defrags.WithLabelValues(ep, reason, "error").Inc()
		err = fmt.Errorf("etcdmaint: defragment %s (%s): %w", ep, reason, err)
		m.event(corev1.EventTypeWarning, ReasonMaintenanceError, "Defragment", "%v", err)
		return before, err
	}
	defrags.WithLabelValues(ep, reason, "ok").Inc()
	lastDefrag.WithLabelValues(ep).Set(took.Seconds())
	after, err := m.status(ctx, ep)
	if err != nil {
		return before, err
	}
	m.log.Info("etcd member defragmented", "endpoint", ep, "reason", reason, "dbSizeBefore", before.DbSize,
		"dbSizeAfter", after.DbSize, "duration", took.String())
	m.event(corev1.EventTypeNormal, ReasonDefragmented, "Defragment", "Defragmented etcd member %s (%s): database %s -> %s in %s",
		ep, reason, mib(before.DbSize), mib(after.DbSize), took.Round(1e6))
	return after, nil
}

// recoverNoSpace compacts to the current revision, defragments every endpoint
// and disarms the alarms once every database fits the quota with headroom.
// Compaction removes only superseded revisions: the latest value of every key
// stays. Watchers behind the current revision get ErrCompacted and re-list.
func (m *Maintainer) recoverNoSpace(ctx context.Context, alarms []*pb.AlarmMember) (err error) {
	m.log.Info("etcd NOSPACE alarm raised: etcd refuses writes; recovering (compact, defragment, disarm)", "members", len(alarms))
	m.event(corev1.EventTypeWarning, ReasonNoSpace, "Recover",
		"etcd raised NOSPACE on %d member(s) and refuses writes; compacting, defragmenting and disarming", len(alarms))
	defer func() {
		if err != nil {
			recoveries.WithLabelValues("error").Inc()
			m.event(corev1.EventTypeWarning, ReasonMaintenanceError, "Recover", "NOSPACE recovery failed, retrying next check: %v", err)
		}
	}()

	before, errs := m.statuses(ctx)
	if len(errs) > 0 {
		// Disarming needs every member below the quota, and defragmenting
		// needs every member: wait until all answer.
		return fmt.Errorf("etcdmaint: NOSPACE recovery: %w", errors.Join(errs...))
	}
	rev, err := m.currentRevision(ctx)
	if err != nil {
		return err
	}
	if err := m.compact(ctx, rev, "nospace", true); err != nil {
		return err
	}
	var after []status
	for _, st := range before {
		a, err := m.defrag(ctx, st, "nospace")
		if err != nil {
			return err
		}
		after = append(after, a)
	}

	for _, a := range after {
		if float64(a.DbSize) >= float64(a.quota())*(1-m.opts.QuotaHeadroom) {
			recoveries.WithLabelValues("full").Inc()
			m.log.Info("etcd NOSPACE alarm left raised: live data fills the quota; raise the quota or delete data",
				"endpoint", a.endpoint, "dbSize", a.DbSize, "dbSizeInUse", a.DbSizeInUse, "quota", a.quota())
			m.event(corev1.EventTypeWarning, ReasonQuotaExhausted, "Recover",
				"etcd member %s holds %s of live data against a quota of %s: NOSPACE stays raised; raise --etcd-quota-bytes or delete data",
				a.endpoint, mib(a.DbSize), mib(a.quota()))
			return nil
		}
	}
	for _, a := range alarms {
		err := m.call(ctx, m.opts.RequestTimeout, func(ctx context.Context) error {
			_, err := m.opts.Client.AlarmDisarm(ctx, (*clientv3.AlarmMember)(a))
			return err
		})
		if err != nil {
			return fmt.Errorf("etcdmaint: disarm NOSPACE of member %x: %w", a.MemberID, err)
		}
	}
	recordAlarms(nil)
	recoveries.WithLabelValues("ok").Inc()
	var sizes []any
	for i := range before {
		sizes = append(sizes, before[i].endpoint, fmt.Sprintf("%s -> %s", mib(before[i].DbSize), mib(after[i].DbSize)))
	}
	m.log.Info("etcd NOSPACE alarm disarmed: writes accepted again", append([]any{"compactedTo", rev}, sizes...)...)
	m.event(corev1.EventTypeNormal, ReasonNoSpaceRecovered, "Recover",
		"etcd NOSPACE recovered: compacted to revision %d, defragmented %d member(s), alarm disarmed", rev, len(after))
	return nil
}

// checkPressure reports live data near the quota once per episode.
func (m *Maintainer) checkPressure(statuses []status) {
	for _, st := range statuses {
		if float64(st.DbSizeInUse) >= pressureRatio*float64(st.quota()) {
			if !m.pressured {
				m.pressured = true
				m.log.Info("etcd live data near its quota; raise the quota or delete data", "endpoint", st.endpoint,
					"dbSizeInUse", st.DbSizeInUse, "quota", st.quota())
				m.event(corev1.EventTypeWarning, ReasonQuotaPressure, "Check",
					"etcd member %s holds %s of live data, over %.0f%% of its %s quota", st.endpoint, mib(st.DbSizeInUse),
					pressureRatio*100, mib(st.quota()))
			}
			return
		}
	}
	m.pressured = false
}

func alarmsOf(alarms []*pb.AlarmMember, t pb.AlarmType) []*pb.AlarmMember {
	var out []*pb.AlarmMember
	for _, a := range alarms {
		if a.Alarm == t {
			out = append(out, a)
		}
	}
	return out
}

// recordAlarms sets the alarm gauge: every known type, 0 when absent.
func recordAlarms(alarms []*pb.AlarmMember) {
	counts := map[pb.AlarmType]int{pb.AlarmType_NOSPACE: 0, pb.AlarmType_CORRUPT: 0}
	for _, a := range alarms {
		counts[a.Alarm]++
	}
	for t, n := range counts {
		alarmsActive.WithLabelValues(t.String()).Set(float64(n))
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
