#!/bin/sh
# Records the real output of a SystemTap script (bpf runtime) on this machine into a testdata case.
#
#   record.sh SCRIPT.stp CASE_DIR [PHASES]
#
# The script gets the workload's pid as $1. This machine's kernel has no module support and no
# build tree, so the kernel runtime cannot run; the bpf runtime can, with work-arounds that
# change nothing outside this run:
#  - stap compiles against Debian's linux-headers (-r 6.1.0-56-amd64): the BPF code of timer and
#    uprobe (SDT marker) probes does not depend on the kernel version;
#  - stapbpf wants RLIMIT_MEMLOCK unlimited, which this container forbids (no CAP_SYS_RESOURCE);
#    kernels >= 5.11 charge BPF memory to the cgroup instead, so memlock.so makes that one
#    setrlimit call report success;
#  - stapbpf writes uprobe_events under /sys/kernel/debug/tracing: debugfs is mounted in a private
#    mount namespace (unshare -m) only;
#  - CPython's gc markers are guarded by semaphores that stapbpf 4.8 does not increment, so this
#    script sets them in the workload's memory (/proc/PID/mem; python3.11 is not PIE).
# Ground truth: the workload counts its own collections with gc.callbacks.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
script=$1
case_dir=$2
phases=${3:-5,10,20}
rel=6.1.0-56-amd64
py=/usr/bin/python3.11
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -shared -fPIC -o "$work/memlock.so" "$here/memlock.c" -ldl
mkdir -p "$case_dir"
$py "$here/gcwork.py" "$work/go" "$work/count" "$phases" &
pid=$!
for marker in gc__start gc__done; do
  sem=$(readelf -n $py | grep -A2 "Name: $marker\$" | sed -n 's/.*Semaphore: \(0x[0-9a-f]*\).*/\1/p')
  python3 -c "import sys; f = open('/proc/$pid/mem', 'r+b'); f.seek(int('$sem', 16)); f.write(b'\x01\x00')"
done
(cd "$work" && stap --runtime=bpf -r $rel -p4 -m rec "$script" "$pid" >/dev/null)
unshare -m sh -c "mount -t debugfs none /sys/kernel/debug && LD_PRELOAD=$work/memlock.so exec stapbpf $work/rec.bo" \
  >"$case_dir/stdout.txt" 2>"$work/stderr.txt" &
sb=$!
sleep 2
touch "$work/go"
wait $pid
sleep 1.5
kill -INT $sb || true
wait $sb || true
{
  echo "workload gc.callbacks start count: $(cat "$work/count") (phases $phases)"
  echo "stapbpf stderr:"
  cat "$work/stderr.txt"
} >"$case_dir/ground-truth.txt"
cat "$case_dir/ground-truth.txt"
