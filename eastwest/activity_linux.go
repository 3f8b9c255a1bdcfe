package eastwest

import (
	"encoding/binary"
	"net"
	"syscall"
	"unsafe"
)

// Offsets in Linux's struct tcp_info (include/uapi/linux/tcp.h) of tcpi_bytes_acked
// and tcpi_bytes_received, both __u64, present since Linux 4.1 and 4.2.
const (
	tcpInfoBytesAcked    = 120
	tcpInfoBytesReceived = 128
	tcpInfoMinLen        = tcpInfoBytesReceived + 8
)

// socketBytes returns how many bytes c has received plus how many it sent that were
// acknowledged, as the kernel counts them: it moves whenever data moves on c, even
// while a splice is blocked in the middle of a transfer, when the gateway itself
// sees nothing. ok is false when the kernel cannot tell (not TCP, closed, too old).
func socketBytes(c net.Conn) (n uint64, ok bool) {
	sc, isSys := c.(syscall.Conn)
	if !isSys {
		return 0, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info [256]byte
	size := uint32(len(info))
	var errno syscall.Errno
	err = raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	})
	if err != nil || errno != 0 || size < tcpInfoMinLen {
		return 0, false
	}
	return binary.NativeEndian.Uint64(info[tcpInfoBytesAcked:]) + binary.NativeEndian.Uint64(info[tcpInfoBytesReceived:]), true
}
