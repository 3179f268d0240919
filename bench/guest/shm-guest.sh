#!/bin/sh
# The guest side of bench/shm-in-host.sh (packed into the guest's initramfs with shmbench,
# netbench and shmbell.ko). usage: sh /shm-guest.sh a|b COUNT MIB BDF intx|msix
# Interrupts from the ivshmem function BDF: intx binds Debian's uio_pci_generic, msix loads
# shmbell.ko (MSI-X vector 0 to /dev/shmbell). Then:
#   b: echoes vsock port 5003 (in the background) and answers A's doorbell COUNT times;
#   a: doorbell ping-pong with B (COUNT round trips); with msix also copy bandwidth (MIB MiB
#      each way) and COUNT 1-byte round trips to B over vsock through the host (CID 2 port
#      5004, which the host relays to B's port 5003).
role=$1
count=$2
mib=$3
bdf=$4
mode=$5
if [ "$mode" = msix ]; then
  insmod /shmbell.ko
  n=0; while [ ! -e /dev/shmbell ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
else
  modprobe uio_pci_generic
  echo "1af4 1110" >/sys/bus/pci/drivers/uio_pci_generic/new_id
  n=0; while [ ! -e /dev/uio0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
fi
if [ "$role" = b ]; then
  [ "$mode" = msix ] && netbench echo vsock:5003 >/dev/null &
  shmbench rr b "$count" "$bdf" "$mode"
else
  shmbench rr a "$count" "$bdf" "$mode"
  if [ "$mode" = msix ]; then
    shmbench copy "$mib" "$bdf"
    netbench rr vsock:2:5004 "$count"
  fi
fi
echo GUEST-BENCH-DONE
sleep 600
