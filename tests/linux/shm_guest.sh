#!/bin/sh
# Runs in a Debian guest of tests/linux/shm_tests.sh: sh /dev/vda ROLE. The ivshmem device
# (00:01.0) through Debian's uio_pci_generic (INTx) and /dev/mem, as QEMU's ivshmem users do.
# Region layout: 0x000 A's word to B, 0x004 B's word to A, 0x008 the read-only borrower's
# attempt, 0x100 + 4 * PEER each peer's ready flag.
role=$1
D=/sys/bus/pci/devices/0000:00:01.0
if [ ! -e $D ]; then
  echo "SHM-NODEVICE $(ls /sys/bus/pci/devices/ 2>/dev/null | wc -l) pci devices"
  exit 0
fi
echo "SHM-ID $(cat $D/vendor):$(cat $D/device)"
R0=$(sed -n 1p $D/resource | cut -d' ' -f1)
B2=$(sed -n 3p $D/resource | cut -d' ' -f1)
echo "SHM-IVPOS $(devmem $((R0 + 8)) 32)"
modprobe uio_pci_generic
echo "1af4 1110" >/sys/bus/pci/drivers/uio_pci_generic/new_id
n=0; while [ ! -e /dev/uio0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
devmem $R0 32 0xffffffff  # IntrMask: every status bit raises INTx
flag() { devmem $((B2 + 0x100 + $1 * 4)) 32; }
setflag() { devmem $((B2 + 0x100 + $1 * 4)) 32 "$2"; }
until_flag() {  # PEER VALUE: waits (at most 60 s) for PEER's flag
  n=0; while [ "$(flag "$1")" != "$(printf 0x%08X "$2")" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
}
ring() { devmem $((R0 + 12)) 32 $(($1 << 16)); }
# One interrupt on the descriptor opened before the peer was told to ring (none is lost).
wait_irq() { timeout 60 dd bs=4 count=1 <&3 2>/dev/null | od -An -tu4 | tr -d ' '; }
# Clears the status, then INTx's Interrupt Disable bit (command register bit 10), which
# uio_pci_generic's handler set: the driver has no irqcontrol, user space writes the config.
rearm() {
  devmem $((R0 + 4)) 32 >/dev/null
  hi=$(dd if=$D/config bs=1 skip=5 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
  printf "\\$(printf %o $((hi & ~4)))" | dd of=$D/config bs=1 seek=5 count=1 conv=notrunc 2>/dev/null
}
case $role in
  a)  # peer 0: rings B, then waits for B's answer
    exec 3<>/dev/uio0
    until_flag 1 1
    devmem $B2 32 0xA11CE000
    ring 1
    setflag 0 2
    echo "SHM-A-WOKE $(wait_irq)"
    echo "SHM-A-GOT $(devmem $((B2 + 4)) 32)"
    ;;
  b)  # peer 1: waits for A, answers
    exec 3<>/dev/uio0
    setflag 1 1
    echo "SHM-B-WOKE $(wait_irq)"
    echo "SHM-B-GOT $(devmem $B2 32)"
    rearm
    until_flag 0 2
    devmem $((B2 + 4)) 32 0xB0B0B0B0
    ring 0
    ;;
  c)  # peer 2, read-only: sees A's word, cannot write
    until_flag 0 2
    echo "SHM-C-SEES $(devmem $B2 32)"
    devmem $((B2 + 8)) 32 0xBAD0BAD0
    echo "SHM-C-WROTE $(devmem $((B2 + 8)) 32)"
    ;;
esac
echo "SHM-DONE $role"
exec sleep 600
