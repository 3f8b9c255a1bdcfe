package kvstore

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// A list page whose values exceed the client's message limit is fetched again in
// halves: the reader mirrors the prefix however large its values, instead of
// failing every list.
func TestReaderSplitsPagesOverTheMessageLimit(t *testing.T) {
	srv, direct := startEtcd(t)
	const prefix = "/test/bigpages/"
	value := strings.Repeat("x", 20_000)
	for i := range 30 {
		if _, err := direct.Put(testContext(t), fmt.Sprintf("%sk%02d", prefix, i), value+fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	// 30 values of 20 KB do not fit one message of 64 KB; three do.
	small, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(), MaxCallRecvMsgSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { small.Close() })
	if _, err := small.Get(testContext(t), prefix, clientv3.WithPrefix()); err == nil {
		t.Fatal("the whole prefix fits one message: the test shows nothing")
	}
	splits := func() float64 { return promtest.ToFloat64(pageSplitsTotal.WithLabelValues(prefix)) }
	before := splits()

	r, rec := newStringReader(t, small, prefix, 0) // the default page size
	testutil.Run(t, "reader", r.Run)
	waitMirrors(t, rec, direct, prefix)
	if splits() == before {
		t.Error("no page was split")
	}
	if got := promtest.ToFloat64(relistsTotal.WithLabelValues(prefix, reasonListError)); got != 0 {
		t.Errorf("%v lists failed, want none", got)
	}
}

// A value the decoder refuses (ErrRefused) is counted apart from malformed ones.
func TestReaderCountsRefusedValues(t *testing.T) {
	_, direct := startEtcd(t)
	const prefix = "/test/refused/"
	if _, err := direct.Put(testContext(t), prefix+"big", strings.Repeat("x", 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Put(testContext(t), prefix+"ok", "v"); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	r, err := NewReader(ReaderOptions[string]{Client: direct, Prefix: prefix, Observer: rec,
		Decode: func(key string, value []byte) (string, error) {
			if len(value) > 10 {
				return "", fmt.Errorf("%w: too large", ErrRefused)
			}
			return string(value), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	decodeErrors := promtest.ToFloat64(decodeErrorsTotal.WithLabelValues(prefix))
	testutil.Run(t, "reader", r.Run)
	testutil.Eventually(t, waitFor, "the refused value to be counted", func() error {
		if got := promtest.ToFloat64(refusedValuesTotal.WithLabelValues(prefix)); got != 1 {
			return errors.New("not yet")
		}
		return nil
	})
	if got := promtest.ToFloat64(decodeErrorsTotal.WithLabelValues(prefix)) - decodeErrors; got != 0 {
		t.Errorf("%v decode errors counted for a refused value, want 0", got)
	}
}
