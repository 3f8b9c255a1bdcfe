package eastwest

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Why the gateway splices by itself rather than through io.Copy: Go's splice keeps
// a pipe per copy for as long as the copy runs, so a tunnel waiting for bytes holds
// two pipes (four descriptors) for nothing, and returns them to a sync.Pool that
// only the garbage collector empties: after a burst of tunnels their pipes stayed
// open long after the tunnels closed. Here a tunnel holds a pipe only while bytes
// move (and pipeHold after), pipes come from a pool bounded in size and closed after
// pipeIdleTTL unused, and every pipe counts in the gateway's descriptor budget.

// Linux splice(2) and fcntl(2) constants the syscall package does not name.
const (
	spliceMove     = 0x1  // SPLICE_F_MOVE
	spliceNonblock = 0x2  // SPLICE_F_NONBLOCK
	fSetPipeSize   = 1031 // F_SETPIPE_SZ
)

// maxSpliceSize is what one splice moves at most, and the pipe size asked for, as
// Go's own splice does.
const maxSpliceSize = 1 << 20

// pipe is a kernel pipe that carries a tunnel's bytes from one socket to the other.
type pipe struct {
	r, w     int
	buffered int       // bytes in the pipe; a pipe that holds some is closed, never pooled
	idle     time.Time // when it was put in the pool
}

func (p *pipe) close() {
	syscall.Close(p.r) //nolint:errcheck
	syscall.Close(p.w) //nolint:errcheck
}

// pipePool lends pipes to tunnels within the gateway's descriptor budget.
type pipePool struct {
	fds *fdBudget

	mu     sync.Mutex
	idle   []*pipe // most recently returned last
	timer  *time.Timer
	closed bool
}

func newPipePool(fds *fdBudget) *pipePool { return &pipePool{fds: fds} }

// get returns an idle pipe or a new one, or nil when the budget has no room for one
// (or pipe2 failed): the caller then copies through user space.
func (pp *pipePool) get() *pipe {
	pp.mu.Lock()
	if n := len(pp.idle); n > 0 {
		p := pp.idle[n-1]
		pp.idle = pp.idle[:n-1]
		pp.mu.Unlock()
		pipesOpen.WithLabelValues("idle").Dec()
		pipesOpen.WithLabelValues("busy").Inc()
		return p
	}
	pp.mu.Unlock()
	if !pp.fds.take(2) {
		return nil
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		pp.fds.give(2)
		return nil
	}
	// A bigger pipe moves more per system call; a smaller one still works.
	syscall.Syscall(syscall.SYS_FCNTL, uintptr(fds[0]), fSetPipeSize, maxSpliceSize) //nolint:errcheck
	pipesOpen.WithLabelValues("busy").Inc()
	return &pipe{r: fds[0], w: fds[1]}
}

// put takes back a pipe: into the pool if it is empty and the pool has room, else
// it is closed.
func (pp *pipePool) put(p *pipe) {
	pipesOpen.WithLabelValues("busy").Dec()
	pp.mu.Lock()
	if p.buffered == 0 && !pp.closed && len(pp.idle) < maxIdlePipes {
		p.idle = time.Now()
		pp.idle = append(pp.idle, p)
		if pp.timer == nil {
			pp.timer = time.AfterFunc(pipeIdleTTL, pp.expire)
		}
		pp.mu.Unlock()
		pipesOpen.WithLabelValues("idle").Inc()
		return
	}
	pp.mu.Unlock()
	p.close()
	pp.fds.give(2)
}

// expire closes the pipes idle for pipeIdleTTL, and runs again while some remain.
func (pp *pipePool) expire() {
	pp.mu.Lock()
	cut := time.Now().Add(-pipeIdleTTL)
	n := 0
	for n < len(pp.idle) && !pp.idle[n].idle.After(cut) {
		n++
	}
	old := pp.idle[:n:n]
	pp.idle = pp.idle[n:]
	pp.timer = nil
	if len(pp.idle) > 0 && !pp.closed {
		pp.timer = time.AfterFunc(time.Until(pp.idle[0].idle.Add(pipeIdleTTL)), pp.expire)
	}
	pp.mu.Unlock()
	pp.release(old)
}

// evict closes every idle pipe, to make room in the budget. It reports whether
// there was any.
func (pp *pipePool) evict() bool {
	pp.mu.Lock()
	old := pp.idle
	pp.idle = nil
	pp.mu.Unlock()
	pp.release(old)
	return len(old) > 0
}

// close closes every idle pipe; pipes put back after it are closed at once.
func (pp *pipePool) close() {
	pp.mu.Lock()
	pp.closed = true
	old := pp.idle
	pp.idle = nil
	if pp.timer != nil {
		pp.timer.Stop()
		pp.timer = nil
	}
	pp.mu.Unlock()
	pp.release(old)
}

func (pp *pipePool) release(pipes []*pipe) {
	for _, p := range pipes {
		p.close()
		pp.fds.give(2)
		pipesOpen.WithLabelValues("idle").Dec()
	}
}

// copyBuffers serve the copies that found no room for a pipe.
var copyBuffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// spliceCopy moves bytes from src to dst until src's end (nil) or an error. Both must
// be *net.TCPConn, else ok is false and nothing was done: the caller copies.
//
// A tunnel holds a pipe only while it moves bytes: it takes one when src has some,
// and gives it back once src has been quiet for pipeHold (a read deadline bounds
// the wait), so that an idle tunnel holds its two sockets and nothing more, while a
// busy one does not go to the pool between every two reads. Each batch moved is
// added to counter and marks the connection active.
func (g *Gateway) spliceCopy(c *conn, dst, src net.Conn, counter prometheus.Counter) (ok bool, err error) {
	d, okd := dst.(*net.TCPConn)
	s, oks := src.(*net.TCPConn)
	if !okd || !oks {
		return false, nil
	}
	draw, err := d.SyscallConn()
	if err != nil {
		return true, err
	}
	sraw, err := s.SyscallConn()
	if err != nil {
		return true, err
	}
	var p *pipe
	defer func() {
		if p != nil {
			g.pipes.put(p)
		}
	}()
	for {
		if p == nil {
			eof, err := waitReadable(sraw)
			if err != nil || eof {
				return true, err
			}
			if p = g.pipes.get(); p == nil {
				// No room for a pipe: copy what is there through user space.
				if eof, err := copyAvailable(c, d, s, counter); err != nil || eof {
					return true, err
				}
				continue
			}
		}
		s.SetReadDeadline(time.Now().Add(pipeHold)) //nolint:errcheck
		eof, err := drain(c, draw, sraw, p, counter)
		s.SetReadDeadline(time.Time{}) //nolint:errcheck
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded) && p.buffered == 0 && c.abortReason() == "":
			g.pipes.put(p) // quiet (or busy) for pipeHold: give the pipe back, take one again when bytes come
			p = nil
		case err != nil || eof:
			return true, err
		}
	}
}

// copyAvailable copies what src has through user space.
func copyAvailable(c *conn, dst, src *net.TCPConn, counter prometheus.Counter) (eof bool, err error) {
	buf := copyBuffers.Get().(*[32 << 10]byte)
	defer copyBuffers.Put(buf)
	n, rerr := src.Read(buf[:])
	if n > 0 {
		if _, err := dst.Write(buf[:n]); err != nil {
			return false, err
		}
		counter.Add(float64(n))
		c.touch()
	}
	if errors.Is(rerr, io.EOF) {
		return true, nil
	}
	return false, rerr
}

// waitReadable returns once src has bytes to read (false), has ended (true), or
// failed. It peeks, so that no pipe is needed to find out.
func waitReadable(src syscall.RawConn) (eof bool, err error) {
	var perr error
	var b [1]byte
	err = src.Read(func(fd uintptr) bool {
		for {
			n, _, e := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return false // wait until readable
			case e != nil:
				perr = e
			case n == 0:
				eof = true
			}
			return true
		}
	})
	if err == nil {
		err = perr
	}
	return eof, err
}

// drain splices from src into p and from p into dst, waiting for src as needed,
// until src ends (eof), its read deadline passes or something fails. Every byte that
// entered p has left it unless an error says otherwise.
func drain(c *conn, dst, src syscall.RawConn, p *pipe, counter prometheus.Counter) (eof bool, err error) {
	for {
		var n int64
		var serr error
		err := src.Read(func(fd uintptr) bool {
			for {
				n, serr = syscall.Splice(int(fd), nil, p.w, nil, maxSpliceSize, spliceMove|spliceNonblock)
				if serr != syscall.EINTR {
					// p is empty here, so EAGAIN means src has nothing: wait for it.
					return serr != syscall.EAGAIN
				}
			}
		})
		switch {
		case err != nil:
			return false, err
		case serr != nil:
			return false, serr
		case n == 0:
			return true, nil
		}
		p.buffered += int(n)
		for p.buffered > 0 {
			var m int64
			var werr error
			err := dst.Write(func(fd uintptr) bool {
				for {
					m, werr = syscall.Splice(p.r, nil, int(fd), nil, p.buffered, spliceMove|spliceNonblock)
					if werr != syscall.EINTR {
						return werr != syscall.EAGAIN // wait until writable
					}
				}
			})
			if err == nil {
				err = werr
			}
			if err != nil {
				return false, err
			}
			p.buffered -= int(m)
			counter.Add(float64(m))
			c.touch()
		}
	}
}
