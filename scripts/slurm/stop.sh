#!/usr/bin/env bash
# Stops the daemons that scripts/slurm/start.sh started, and only those (the pids it recorded in
# $COMCL_SLURM_STATE, default /tmp/comcl-slurm), in the reverse order of their start. Jobs still
# queued or running on that controller are cancelled first. Packages and configuration stay, so
# start.sh brings the same cluster back in seconds.
set -uo pipefail

STATE=${COMCL_SLURM_STATE:-/tmp/comcl-slurm}

say() { echo "[slurm/stop] $*"; }
gone() { [ ! -d "/proc/$1" ] || grep -q '^State:.*zombie' "/proc/$1/status" 2>/dev/null; }

if [ -f "$STATE/slurmctld.pid" ]; then
    mapfile -t jobs < <(squeue -h -o %A 2>/dev/null)
    if [ ${#jobs[@]} -gt 0 ]; then
        scancel "${jobs[@]}"
        sleep 2
    fi
fi
for name in slurmd slurmctld slurmdbd mariadbd munged; do
    [ -f "$STATE/$name.pid" ] || continue
    pid=$(cat "$STATE/$name.pid")
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
        kill -TERM "$pid"
        for _ in $(seq 300); do gone "$pid" && break; sleep 0.1; done
        if ! gone "$pid"; then
            say "$name (pid $pid) still runs 30 s after SIGTERM: SIGKILL"
            kill -KILL "$pid"
        fi
        say "stopped $name (pid $pid)"
    else
        say "$name (pid $pid) had stopped already"
    fi
    rm -f "$STATE/$name.pid"
done
