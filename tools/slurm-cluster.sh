#!/usr/bin/env bash
# slurm-cluster.sh: a real single-node SLURM cluster on this machine, for testing the workflow's
# `slurm` profile (tests/test_slurm.py). Debian/Ubuntu, run as root; no systemd needed.
#
#   tools/slurm-cluster.sh install  install the Debian packages that are missing (apt-get)
#   tools/slurm-cluster.sh up       install, configure, start, wait until the node takes jobs
#   tools/slurm-cluster.sh stop     stop the daemons this cluster started, remove its configs
#   tools/slurm-cluster.sh status   which of its daemons run
#
# The configs go where every SLURM command looks, /etc/slurm (the executor plugin drops
# SLURM_CONF from the environment of the `srun` inside each job, so another place would not be
# found); a slurm.conf there that this script did not write is never overwritten. Everything else
# lives under $ACTIONLM_SLURM_DIR (default /var/lib/actionlm-slurm): its own munged socket,
# MariaDB data folder (accounting: without slurmdbd the plugin's `sacct` status check never
# returns), state, logs and pid files; the daemons listen on their own ports.
#
# The node claims ACTIONLM_SLURM_CPUS (8) CPUs, ACTIONLM_SLURM_MEM_MB (32000) MB and
# ACTIONLM_SLURM_GPUS (2) GPUs of GRES type ACTIONLM_SLURM_GPU_TYPE (tgpu), more than the hardware
# may have (nothing is enforced; the GPUs are stand-in device files), so that every rule's
# declared resources fit. Partitions: `cpu` (default) and `gpu`. Ports from ACTIONLM_SLURM_PORT
# (16817): slurmctld, slurmd, slurmdbd, MariaDB. Exit status 3: another SLURM setup owns /etc/slurm.
set -euo pipefail

DIR=${ACTIONLM_SLURM_DIR:-/var/lib/actionlm-slurm}
CPUS=${ACTIONLM_SLURM_CPUS:-8}
MEM_MB=${ACTIONLM_SLURM_MEM_MB:-32000}
GPUS=${ACTIONLM_SLURM_GPUS:-2}
GPU_TYPE=${ACTIONLM_SLURM_GPU_TYPE:-tgpu}
PORT=${ACTIONLM_SLURM_PORT:-16817}
CTLD_PORT=$PORT SLURMD_PORT=$((PORT + 1)) DBD_PORT=$((PORT + 2)) DB_PORT=$((PORT + 3))
HOST=$(hostname -s)
ETC=/etc/slurm RUN=$DIR/run LOG=$DIR/log MUNGE=$DIR/munge DB=$DIR/mariadb
SOCKET=$MUNGE/munge.socket
MARKER="# written by tools/slurm-cluster.sh"
PACKAGES="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
# daemon -> pid file, in start order
DAEMONS="munged:$MUNGE/munged.pid mariadbd:$DB/mariadbd.pid slurmdbd:$RUN/slurmdbd.pid
slurmctld:$RUN/slurmctld.pid slurmd:$RUN/slurmd.pid"

log() { echo "[slurm-cluster] $*" >&2; }
die() { log "$*"; exit 1; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
pidfile() { local e; for e in $DAEMONS; do [ "${e%%:*}" != "$1" ] || echo "${e#*:}"; done; }
wait_for() { # wait_for SECONDS WHAT CMD...: poll CMD every 0.25 s until it succeeds
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  while [ "$SECONDS" -lt "$deadline" ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  die "timed out after ${seconds}s waiting for $what (logs: $LOG)"
}

install_packages() {
  local missing="" p
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  [ "$(id -u)" = 0 ] || die "needs root to install:$missing"
  command -v apt-get >/dev/null || die "no apt-get to install:$missing"
  log "apt-get install$missing"
  apt-get update -q >/dev/null
  # without systemd the packages' postinst scripts start nothing; this script starts its own
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
}

write_if_changed() { # write_if_changed FILE MODE < content: keep the file (and mtime) if equal
  local tmp; tmp=$(mktemp "$1.XXXX")
  cat > "$tmp"; chmod "$2" "$tmp"
  if cmp -s "$tmp" "$1"; then rm "$tmp"; else mv "$tmp" "$1"; touch "$RUN/reconfigured"; fi
}

configure() {
  if [ -e "$ETC/slurm.conf" ] && ! grep -qxF "$MARKER" "$ETC/slurm.conf"; then
    log "$ETC/slurm.conf belongs to another SLURM setup; not touching it"; exit 3
  fi
  mkdir -p "$ETC" "$RUN" "$LOG" "$MUNGE" "$DIR/state" "$DIR/spool"
  chmod 755 "$DIR"
  chown munge:munge "$MUNGE"; chmod 755 "$MUNGE"   # munged: socket dir open to all
  if [ ! -s "$MUNGE/munge.key" ]; then
    mungekey --create --keyfile="$MUNGE/munge.key"
    chown munge:munge "$MUNGE/munge.key"; chmod 600 "$MUNGE/munge.key"
  fi
  local devices=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty) i gres=""
  [ "$GPUS" -le "${#devices[@]}" ] || die "at most ${#devices[@]} stand-in GPUs"
  [ "$GPUS" -gt 0 ] && gres=" Gres=gpu:$GPU_TYPE:$GPUS"
  write_if_changed "$ETC/slurm.conf" 644 <<EOF
$MARKER
ClusterName=actionlm
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$SOCKET
AccountingStorageTRES=gres/gpu,gres/gpu:$GPU_TYPE
AccountingStoreFlags=job_comment
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
SlurmctldTimeout=30
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB$gres State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST Default=NO MaxTime=INFINITE State=UP
EOF
  # gres/gpu needs one File= per GPU or the node is drained; any character device stands in.
  {
    echo "AutoDetect=off"
    for ((i = 0; i < GPUS; i++)); do
      echo "NodeName=$HOST Name=gpu Type=$GPU_TYPE File=${devices[$i]}"
    done
  } | write_if_changed "$ETC/gres.conf" 644
  write_if_changed "$ETC/slurmdbd.conf" 600 <<EOF
AuthType=auth/munge
AuthInfo=socket=$SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
}

start_database() {
  # the server runs as user mysql: its data, socket, pid file and log live in its own folder
  if [ ! -d "$DB/data/mysql" ]; then
    mkdir -p "$DB/data"; chown -R mysql:mysql "$DB"
    mariadb-install-db --user=mysql --datadir="$DB/data" --skip-test-db \
      --auth-root-authentication-method=socket > "$LOG/mariadb-install.log" 2>&1
  fi
  setsid mariadbd --user=mysql --datadir="$DB/data" --socket="$DB/mysqld.sock" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$DB/mariadbd.pid" \
    --log-error="$DB/mariadb.log" </dev/null >/dev/null 2>&1 &
  wait_for 30 "MariaDB (log: $DB/mariadb.log)" mariadb-admin --socket="$DB/mysqld.sock" --silent ping
  mariadb --socket="$DB/mysqld.sock" -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

node_ready() { sinfo -h -n "$HOST" -o %T | grep -qxE 'idle|mixed|allocated'; }

start() {
  if [ -e "$RUN/reconfigured" ]; then   # running daemons read their config only at start
    stop_daemons slurmd slurmctld slurmdbd
    rm -f "$RUN/reconfigured"
  fi
  alive "$(pidfile munged)" || runuser -u munge -- munged --socket="$SOCKET" \
    --key-file="$MUNGE/munge.key" --pid-file="$(pidfile munged)" \
    --log-file="$MUNGE/munged.log" --seed-file="$MUNGE/munged.seed"
  wait_for 10 munged sh -c "munge -n --socket='$SOCKET' | unmunge --socket='$SOCKET'"
  alive "$(pidfile mariadbd)" || start_database
  alive "$(pidfile slurmdbd)" || slurmdbd
  wait_for 30 slurmdbd sacctmgr -n list cluster
  alive "$(pidfile slurmctld)" || slurmctld
  wait_for 30 slurmctld scontrol ping
  alive "$(pidfile slurmd)" || slurmd
  if ! (wait_for 30 "node $HOST" node_ready) 2>/dev/null; then
    # a node drained by an earlier run's config comes back on resume
    scontrol update NodeName="$HOST" State=RESUME || true
    wait_for 30 "node $HOST" node_ready
  fi
  log "cluster up: $(sinfo -h -N -o '%N %P %T cpus=%c mem=%m %G' | tr '\n' ';')"
}

stop_daemons() { # stop_daemons NAME...: TERM, wait up to 20 s, then KILL what is left
  local name file pids="" p left
  for name in "$@"; do
    file=$(pidfile "$name")
    alive "$file" && pids="$pids $(cat "$file")"
  done
  [ -n "$pids" ] || return 0
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 1 80); do
    left=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
    [ -n "$left" ] || return 0
    sleep 0.25
  done
  log "KILL$left (ignored TERM)"
  kill -KILL $left 2>/dev/null || true
}

stop() {
  alive "$(pidfile slurmctld)" && { scancel --full --user=root 2>/dev/null || true; }
  stop_daemons slurmd slurmctld slurmdbd
  stop_daemons mariadbd munged
  # A client config naming a stopped controller makes every SLURM command wait ~10 s for it,
  # and so every snakemake start (the SLURM executor plugin asks `scontrol` when imported);
  # without a config they fail at once. `up` writes them again.
  if [ -e "$ETC/slurm.conf" ] && grep -qxF "$MARKER" "$ETC/slurm.conf"; then
    rm -f "$ETC/slurm.conf" "$ETC/gres.conf" "$ETC/slurmdbd.conf"
  fi
}

status() {
  local e
  for e in $DAEMONS; do
    if alive "${e#*:}"; then echo "${e%%:*} running (pid $(cat "${e#*:}"))"
    else echo "${e%%:*} stopped"; fi
  done
}

case "${1:-}" in
  install) install_packages ;;
  up) install_packages; configure; start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|up|stop|status" >&2; exit 2 ;;
esac
