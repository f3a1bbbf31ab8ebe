#!/bin/bash
# three separate calibrate+validate runs at p = 2, 3, 4, default --bind auto (pinned only while there is a core per rank)
. /work/venv/bin/activate && cd /work/wt/netperf && export PYTHONPATH=$PWD
D=benchmarks/results/validation/mode
mkdir -p $D
for i in 1 2 3; do
  { echo "# $(date -u) uptime: $(uptime)"; echo "\$ python -m collectives.sim calibrate --nprocs 2,3,4 --out $D/profile-$i.json"; } > $D/run-$i.txt
  python -m collectives.sim calibrate --nprocs 2,3,4 --out $D/profile-$i.json >> $D/run-$i.txt 2>&1
  { echo "# $(date -u) uptime: $(uptime)"; echo "\$ python -m collectives.sim validate --profile $D/profile-$i.json --nprocs 2,3,4 --json $D/validate-$i.json"; } >> $D/run-$i.txt
  python -m collectives.sim validate --profile $D/profile-$i.json --nprocs 2,3,4 --json $D/validate-$i.json >> $D/run-$i.txt 2>&1
  echo "# done $(date -u) uptime: $(uptime)" >> $D/run-$i.txt
done
