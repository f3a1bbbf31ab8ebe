#!/bin/bash
# The launches behind benchmarks/results/ddp/*-run*.json (issue 16): the tree before the change
# (BASE, a checkout of commit a5ebe3b with this branch's benchmarks/ddp_bench.py copied in) and
# this branch (NEW), interleaved launch by launch so that the machine's drift hits both alike.
#   mkdir -p /tmp/base && git archive a5ebe3b | tar -x -C /tmp/base && cp benchmarks/ddp_bench.py /tmp/base/benchmarks/
#   BASE=/tmp/base benchmarks/results/ddp/measure_issue16.sh
# Runs 6-10 are the same two loops with i in 6..10, made when the machine's load had dropped to 2-3.
. /work/venv/bin/activate 2>/dev/null
NEW=$(cd "$(dirname "$0")/../../.." && pwd); OUT=$NEW/benchmarks/results/ddp
for i in 1 2 3 4 5; do
  for tree in BASE NEW; do
    dir=${!tree}; tag=$([ $tree = NEW ] && echo run$i || echo before-run$i)
    echo "$(date +%T) $(uptime | sed 's/.*load/load/') overlap $tree $i"
    (cd "$dir" && PYTHONPATH=$dir timeout 900 mpiexec -n 2 python benchmarks/ddp_bench.py overlap \
      --json "$OUT/overlap-resnet-p2-$tag.json" 2>&1 | tail -3)
  done
done
for i in 1 2 3 4 5; do
  for tree in BASE NEW; do
    dir=${!tree}; tag=$([ $tree = NEW ] && echo run$i || echo before-run$i)
    echo "$(date +%T) $(uptime | sed 's/.*load/load/') scaling $tree $i"
    (cd "$dir" && PYTHONPATH=$dir timeout 900 python benchmarks/ddp_bench.py scaling --repeats 3 \
      --json "$OUT/scaling-resnet-$tag.json" 2>&1 | tail -4)
  done
done
