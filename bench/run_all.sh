#!/usr/bin/env bash
# Every benchmark, one after the other in one sitting; the tables go to standard output (BENCHMARKS.md).
# `--no-faults` leaves out the fault-injection trials (about 17 minutes), e.g. when they ran on their own.
# `--slots "50 100 200 300"` sets the sizes of the agent-slots bench (section 7; about 20 minutes as given;
# `--slots none` leaves it out); its Celery-traffic and prefork comparisons run at the largest size and at 50.
set -euo pipefail
cd "$(dirname "$0")/.."
faults=yes slots="50 100 200 300"
while [ $# -gt 0 ]; do
  case "$1" in
    --no-faults) faults=no ;;
    --slots) slots="$2"; shift ;;
    *) echo "usage: bench/run_all.sh [--no-faults] [--slots \"50 100 200 300\"|none]" >&2; exit 2 ;;
  esac
  shift
done
echo "## Machine"; echo; echo '```'
echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(python --version); $(git --version); $(redis-server --version | cut -d' ' -f1-3)"
echo '```'
echo; echo "## 1. Dispatch"; echo; python bench/dispatch_bench.py --items 100
echo; echo "## 2. Workspace"; echo; python bench/workspace_bench.py --files 1000 10000 50000
echo; echo "## 3. Integration"; echo; python bench/integration_bench.py --workers 1 8 32 64 --conflicts 0 0.1 --landings 64
echo; echo "End to end at 32 workers, 256 landings (queue beside direct):"; echo
python bench/integration_bench.py --workers 32 --conflicts 0 --landings 256
echo; echo "Hosted remote, 6 pushes a minute (queue mode, push interval 10 s, 32 workers, 60 s):"; echo
python bench/integration_bench.py --hosted --seconds 60
echo; python bench/integration_bench.py --lander-only 500
echo; echo "## 4. Scale"; echo; python bench/scale_bench.py --items 5000 --workers 500
echo; echo "## 5. Footprint"; echo; python bench/footprint.py
if [ "$faults" = yes ]; then
  echo; echo "## 6. Fault injection"; echo; python bench/fault_injection.py --trials 9 2>/dev/null
fi
if [ "$slots" != none ]; then
  largest=$(echo $slots | tr ' ' '\n' | sort -n | tail -1)
  echo; echo "## 7. Hundreds of agent slots"; echo
  python bench/slots_bench.py --slots $slots
  echo; echo "Celery's own traffic as Celery sets it (gossip, mingle, a heartbeat every 2 s, task-sent events), at $largest slots:"; echo
  python bench/slots_bench.py --slots "$largest" --traffic celery-defaults | tail -3
  echo; echo "A process per slot (prefork), 50 slots:"; echo
  python bench/slots_bench.py --slots 50 --pool prefork | tail -3
fi
