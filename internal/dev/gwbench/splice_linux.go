package gwbench

import (
	"net"
	"syscall"
)

// Linux splice(2) and fcntl(2) constants the syscall package does not name.
const (
	spliceMove     = 0x1  // SPLICE_F_MOVE
	spliceNonblock = 0x2  // SPLICE_F_NONBLOCK
	fSetPipeSize   = 1031 // F_SETPIPE_SZ
	maxSplice      = 1 << 20
)

// spliceCopy moves src's bytes to dst through a pipe of its own until src ends (nil).
func spliceCopy(dst, src *net.TCPConn) error {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return err
	}
	defer syscall.Close(p[0])                                                  //nolint:errcheck
	defer syscall.Close(p[1])                                                  //nolint:errcheck
	syscall.Syscall(syscall.SYS_FCNTL, uintptr(p[0]), fSetPipeSize, maxSplice) //nolint:errcheck // a smaller pipe works too
	sraw, err := src.SyscallConn()
	if err != nil {
		return err
	}
	draw, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var n int64
		var serr error
		if err := sraw.Read(func(fd uintptr) bool {
			for {
				n, serr = syscall.Splice(int(fd), nil, p[1], nil, maxSplice, spliceMove|spliceNonblock)
				if serr != syscall.EINTR {
					return serr != syscall.EAGAIN // the pipe is empty: EAGAIN means src has nothing yet
				}
			}
		}); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		if n == 0 {
			return nil
		}
		for n > 0 {
			var m int64
			var werr error
			if err := draw.Write(func(fd uintptr) bool {
				for {
					m, werr = syscall.Splice(p[0], nil, int(fd), nil, int(n), spliceMove|spliceNonblock)
					if werr != syscall.EINTR {
						return werr != syscall.EAGAIN
					}
				}
			}); err != nil {
				return err
			}
			if werr != nil {
				return werr
			}
			n -= m
		}
	}
}
