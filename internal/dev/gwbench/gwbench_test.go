package gwbench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// spliceEnv makes the test binary the splice proxy: its value is the forwards,
// comma-separated.
const spliceEnv = "GWBENCH_SPLICE_FORWARDS"

func TestMain(m *testing.M) {
	if f := os.Getenv(spliceEnv); f != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if err := ServeSplice(ctx, strings.Split(f, ","), os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

func testSpliceCommand(forwards []string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), spliceEnv+"="+strings.Join(forwards, ","))
	return cmd
}

// TestQuickRun runs the benchmark with tiny sizes against the real gateway binary
// and the splice proxy, each its own process: every path moves every byte (the
// sink's count), every round trip and connection setup succeeds and is echoed
// intact, and the table has every row. It asserts no timing.
func TestQuickRun(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the benchmark reads /proc and splices: Linux only")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshfed")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meshfed/meshfed/cmd/meshfed").CombinedOutput(); err != nil {
		t.Fatalf("build meshfed: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o := Quick
	o.Dir, o.MeshfedBinary, o.SpliceCommand, o.Out = filepath.Join(dir, "run"), bin, testSpliceCommand, testWriter{t}
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res.Print(&out)
	t.Logf("\n%s", out.String())
	for _, name := range []string{Direct, Splice, Gateway} {
		f := res.Paths[name]
		want := o.Bytes / int64(o.Conns) * int64(o.Conns) * int64(o.Rounds)
		if f.Bytes != want || f.MBps <= 0 {
			t.Errorf("%s: moved %d bytes (%.0f MB/s), want %d", name, f.Bytes, f.MBps, want)
		}
		if len(f.RTT) != o.RoundTrips*o.Rounds || len(f.Setup) != o.Setups*o.Rounds {
			t.Errorf("%s: %d round trips and %d setups, want %d and %d", name, len(f.RTT), len(f.Setup), o.RoundTrips*o.Rounds, o.Setups*o.Rounds)
		}
	}
	if n := strings.Count(out.String(), "\n"); n < 12 {
		t.Errorf("table has %d lines, want a row per figure:\n%s", n, out.String())
	}
}

func TestSpliceProxyRefusesBadForwards(t *testing.T) {
	for _, f := range [][]string{nil, {"127.0.0.1:0"}, {"=127.0.0.1:1"}} {
		if err := ServeSplice(context.Background(), f, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "forward") {
			t.Errorf("ServeSplice(%q) = %v, want an error about --forward", f, err)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
