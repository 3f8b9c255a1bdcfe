package proc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is a running child process.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // the exit status, valid after done
}

// Start runs path with args, appending its output to logPath.
func Start(name, path string, args []string, logPath string, env ...string) (*Process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// The kernel kills the child when the thread that started it exits. Go keeps
		// its threads for the life of the process, so this fires when the owner dies,
		// however it dies (panic, os.Exit, SIGKILL).
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process ID, also its process group ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the whole process group and returns: SIGSTOP freezes it,
// SIGCONT resumes it.
func (p *Process) Signal(sig syscall.Signal) {
	if !p.Exited() {
		_ = syscall.Kill(-p.Pid(), sig)
	}
}

// Kill sends sig to the whole process group and waits for the process to exit.
func (p *Process) Kill(sig syscall.Signal) {
	if !p.Exited() {
		_ = syscall.Kill(-p.Pid(), sig)
	}
	<-p.done
}

// Stop ends the whole process group: SIGTERM, then SIGKILL after grace.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill(syscall.SIGKILL)
	}
}

// Failure describes an exited process with the tail of its log.
func (p *Process) Failure() error {
	data, _ := os.ReadFile(p.LogPath)
	if len(data) > 2048 {
		data = data[len(data)-2048:]
	}
	status := "exited"
	if p.err != nil {
		status = p.err.Error()
	}
	return fmt.Errorf("%s %s; last log lines (%s):\n%s", p.Name, status, p.LogPath, bytes.TrimSpace(data))
}
