#!/bin/sh
# The guest side of bench/net-in-host.sh (packed into the guest's initramfs with netbench).
# usage: sh /net-guest.sh tap|vsock BYTES
mode=$1
bytes=$2
export NETBENCH_NOHASH=1
if [ "$mode" = tap ]; then
  ip addr add 192.168.77.2/24 dev eth0
  ip link set eth0 up
  netbench echo tcp:5003 >/dev/null &
  netbench sink tcp:5001                         # host -> guest
  sleep 1
  netbench send tcp:192.168.77.1:5002 "$bytes"   # guest -> host
else
  netbench echo vsock:5003 >/dev/null &
  netbench sink vsock:5001
  sleep 1
  netbench send vsock:2:5002 "$bytes"
fi
echo GUEST-BENCH-DONE
sleep 600
