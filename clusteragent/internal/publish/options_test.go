package publish

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

func TestNewValidates(t *testing.T) {
	valid := func() Options {
		return Options{Cluster: "east-1", Kube: fake.NewClientset(), Sink: newRecordingSink(newFakeView(nil, nil)), View: newFakeView(nil, nil)}
	}
	tests := map[string]struct {
		mod     func(*Options)
		wantErr string
	}{
		"valid":                {mod: func(*Options) {}},
		"MCS is optional":      {mod: func(o *Options) { o.MCS = nil }},
		"no Kube":              {mod: func(o *Options) { o.Kube = nil }, wantErr: "Kube is required"},
		"no Sink":              {mod: func(o *Options) { o.Sink = nil }, wantErr: "Sink is required"},
		"no View":              {mod: func(o *Options) { o.View = nil }, wantErr: "View is required"},
		"no cluster":           {mod: func(o *Options) { o.Cluster = "" }, wantErr: "Options.Cluster"},
		"cluster not a label":  {mod: func(o *Options) { o.Cluster = "East_1" }, wantErr: "Options.Cluster"},
		"cluster with a slash": {mod: func(o *Options) { o.Cluster = "a/b" }, wantErr: "Options.Cluster"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opts := valid()
			tc.mod(&opts)
			p, err := New(opts)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.wantErr == "" && p.opts.ResyncPeriod != defaultResyncPeriod:
				t.Errorf("ResyncPeriod = %v, want the default %v", p.opts.ResyncPeriod, defaultResyncPeriod)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("New: error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// failingView's WaitSynced fails at once.
type failingView struct{ *fakeView }

var errViewBroken = errors.New("view broken")

func (*failingView) WaitSynced(context.Context) error { return errViewBroken }

// TestRunErrors covers Run's error returns. A fake clientset is enough: nothing is
// published.
func TestRunErrors(t *testing.T) {
	view := &failingView{newFakeView(nil, nil)}
	sink := newRecordingSink(view.fakeView)
	p, err := New(Options{Cluster: "east-1", Kube: fake.NewClientset(), Sink: sink, View: view, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	p.GlobalServicesChanged() // before Run: a no-op, and safe

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := p.Run(ctx); !errors.Is(err, errViewBroken) {
		t.Errorf("Run with a failing view = %v, want %v", err, errViewBroken)
	}
	if err := p.Run(ctx); err == nil || !strings.Contains(err.Error(), "Run called twice") {
		t.Errorf("second Run = %v, want an error", err)
	}
	p.GlobalServicesChanged() // after Run: a no-op, and safe
	if ops, _ := sink.calls(); len(ops) > 0 {
		t.Errorf("published without a synced view: %v", ops)
	}
}

// TestRunStopsWhileWaiting checks that a Run blocked on the view returns nil when
// its context ends.
func TestRunStopsWhileWaiting(t *testing.T) {
	view := newFakeView(nil, nil)
	p, err := New(Options{Cluster: "east-1", Kube: fake.NewClientset(), Sink: newRecordingSink(view), View: view, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-view.waiting:
	case <-time.After(waitFor):
		t.Fatal("Run never waited for the view")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not return after cancel")
	}
}
