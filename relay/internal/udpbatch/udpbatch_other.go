//go:build !linux

package udpbatch

import "net"

func gsoSupported(*net.UDPConn) bool { return false }
func enableGRO(*net.UDPConn) bool    { return false }
func segmentOOB(int) []byte          { return nil }
func groSize([]byte) int             { return 0 }
