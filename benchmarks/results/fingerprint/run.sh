#!/bin/sh
# The small-message and 1 MiB allreduce against MPI, checks on (the library's default), before and
# after the fingerprint travels in the algorithm's messages, alternating trees launch by launch.
#
#   sh benchmarks/results/fingerprint/run.sh OLD_TREE NEW_TREE OUT_DIR [LAUNCHES]
#
# OLD_TREE / NEW_TREE: checkouts to put first on PYTHONPATH (e.g. a worktree of the commit before
# this change, and this one). Each launch of `python -m collectives.bench` pairs auto with MPI's
# Allreduce round by round (its "vs MPI" ratio); the JSON files keep every time, the load and the
# versions. summarize.py prints the ratios.
set -e
old=$1 new=$2 out=$3 launches=${4:-3}
mkdir -p "$out"
for launch in $(seq 1 "$launches"); do
    for p in 2 4; do
        for tree in old new; do
            if [ $tree = old ]; then src=$old; else src=$new; fi
            PYTHONPATH=$src timeout 600 mpiexec -n $p python -m collectives.bench -b 8 -e 4K -a auto -r 7 \
                --json "$out/p$p-small-$tree-$launch.json" > /dev/null
            PYTHONPATH=$src timeout 600 mpiexec -n $p python -m collectives.bench -b 1M -e 1M -a auto -r 7 \
                --json "$out/p$p-1mib-$tree-$launch.json" > /dev/null
        done
    done
done
