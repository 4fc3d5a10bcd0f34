#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, to run the workflow's SLURM profile (profiles/slurm)
# against a real scheduler: partition "local", account "comcl", no GPUs.
#
# As root on Debian 12: installs SLURM 22.05, slurmdbd, MariaDB and munge from Debian's packages
# where missing (without letting the packages start their services), writes /etc/slurm/slurm.conf
# and slurmdbd.conf, starts munged, mariadbd (socket only), slurmdbd, slurmctld and slurmd, and
# waits until the node runs a job. Safe to run again: a daemon that runs already is left alone. The
# pid of each daemon this script starts is recorded in $COMCL_SLURM_STATE (default
# /tmp/comcl-slurm); scripts/slurm/stop.sh stops exactly those. The last line printed is
# `partition=... account=...`.
#
# Accounting (slurmdbd + MariaDB) because Snakemake's SLURM executor asks sacct for job states:
# without it sacct knows no job and the workflow waits forever. DefMemPerCPU because a job that
# asks for no memory would otherwise be given, and block, the whole node.
set -euo pipefail

PARTITION=local
ACCOUNT=comcl
CLUSTER=comcl
STATE=${COMCL_SLURM_STATE:-/tmp/comcl-slurm}
LOGS=/var/log/slurm
NODE=$(hostname -s)
MARKER="# Written by comcl's scripts/slurm/start.sh."

say() { echo "[slurm/start] $*"; }
fail() { say "ERROR: $*" >&2; exit 1; }
# running NAME PIDFILE: the pid in PIDFILE is a live process named NAME.
running() {
    local pid
    pid=$(cat "$2" 2>/dev/null) && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] \
        && ! grep -q '^State:.*zombie' "/proc/$pid/status"
}

# launch NAME PIDFILE COMMAND...: unless NAME runs with the pid in PIDFILE, run COMMAND, wait for
# PIDFILE and record that pid as ours.
launch() {
    local name=$1 pidfile=$2
    shift 2
    if running "$name" "$pidfile"; then
        say "$name runs already (pid $(cat "$pidfile"))"
        return
    fi
    "$@"
    for _ in $(seq 100); do running "$name" "$pidfile" && break; sleep 0.1; done
    if ! running "$name" "$pidfile"; then
        tail -n 20 "$LOGS/$name.log" >&2 2>/dev/null || true
        fail "$name did not start"
    fi
    cp "$pidfile" "$STATE/$name.pid"
    say "started $name (pid $(cat "$pidfile"))"
}

[ "$(id -u)" = 0 ] || fail "run as root: this installs Debian packages and starts the SLURM daemons"
command -v apt-get >/dev/null || fail "apt-get not found: this script sets up SLURM on Debian 12"
if [ -f /etc/slurm/slurm.conf ] && ! grep -qxF "$MARKER" /etc/slurm/slurm.conf; then
    fail "/etc/slurm/slurm.conf exists and was not written by this script: leaving that SLURM installation alone"
fi
mkdir -p "$STATE"

missing=()
for package in slurm-wlm slurmdbd munge mariadb-server; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    # Exit code 101 of policy-rc.d tells the packages' scripts not to start their services.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -z "$policy" ] || rm -f "$policy"
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/spool/slurmdbd "$LOGS" /run/munge /run/mysqld
chown slurm:slurm /var/spool/slurmctld /var/spool/slurmdbd "$LOGS"
chown munge:munge /run/munge
chown mysql:mysql /run/mysqld
hardware=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]* //')  # CPUs=.. Boards=.. RealMemory=..
config=$(cat <<EOF
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
MinJobAge=300
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/var/spool/slurmctld/slurmctld.pid
SlurmdPidFile=/var/spool/slurmd/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageEnforce=associations
NodeName=$NODE NodeAddr=127.0.0.1 $hardware State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ "$config" != "$(cat /etc/slurm/slurm.conf 2>/dev/null)" ] && running slurmctld /var/spool/slurmctld/slurmctld.pid; then
    fail "slurm.conf would change while slurmctld runs: run scripts/slurm/stop.sh first"
fi
echo "$config" > /etc/slurm/slurm.conf
cat > /etc/slurm/slurmdbd.conf <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
PidFile=/var/spool/slurmdbd/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=comcl
EOF
chown slurm:slurm /etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf  # slurmdbd refuses a configuration others can read
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi

launch munged /run/munge/munged.pid runuser -u munge -- /usr/sbin/munged
[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
launch mariadbd /run/mysqld/mysqld.pid setsid sh -c "exec /usr/sbin/mariadbd --user=mysql --skip-networking \
    --pid-file=/run/mysqld/mysqld.pid >>$LOGS/mariadbd.log 2>&1 </dev/null &"
for _ in $(seq 120); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.5; done
mariadb-admin ping >/dev/null 2>&1 || fail "MariaDB does not answer: see $LOGS/mariadbd.log"
mariadb -e "CREATE USER IF NOT EXISTS slurm@localhost IDENTIFIED BY 'comcl'; GRANT ALL ON slurm_acct_db.* TO slurm@localhost;"
launch slurmdbd /var/spool/slurmdbd/slurmdbd.pid /usr/sbin/slurmdbd
for _ in $(seq 120); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -n list cluster >/dev/null 2>&1 || fail "slurmdbd does not answer: see $LOGS/slurmdbd.log"
user=$(id -un)
sacctmgr -n list cluster "$CLUSTER" format=cluster | grep -q . \
    || sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -n list account "$ACCOUNT" format=account | grep -q . \
    || sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" >/dev/null
sacctmgr -n list user "$user" withassoc format=account | grep -qw "$ACCOUNT" \
    || sacctmgr -i add user "$user" Account="$ACCOUNT" >/dev/null
launch slurmctld /var/spool/slurmctld/slurmctld.pid /usr/sbin/slurmctld
launch slurmd /var/spool/slurmd/slurmd.pid /usr/sbin/slurmd

state=""
for _ in $(seq 120); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    case "$state" in
        idle | mixed | allocated) break ;;
        down* | drain*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
done
case "$state" in
    idle | mixed | allocated) ;;
    *)
        tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
        fail "node $NODE is '$state', not idle"
        ;;
esac
srun --partition="$PARTITION" --account="$ACCOUNT" --time=1 --mem=50 true
say "ready: node $NODE ($hardware)"
echo "partition=$PARTITION account=$ACCOUNT"
