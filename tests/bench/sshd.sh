# Sourced by the benchmarks that compare with OpenSSH: a local sshd on a free loopback port
# with its own host key, client key and config, for this user. Loopback only.
#
#   sshd_start DIR LOGFILE   -> starts sshd; sets SSHD_PID, SSHD_PORT and SSH_CONFIG (a config
#                               whose host "bench" reaches it non-interactively). Returns 1
#                               with SSHD_ERR set when sshd cannot start.
# The caller stops SSHD_PID (its cleanup trap).

sshd_start() {
  local d=$1 log=$2 me
  me=$(id -un)
  mkdir -p "$d"
  chmod 700 "$d"
  [[ $(id -u) -eq 0 ]] && mkdir -p /run/sshd # privilege separation directory
  ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$d/client_key"
  cp "$d/client_key.pub" "$d/authorized_keys"
  SSHD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$d/sshd_config" <<EOF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
PrintLastLog no
UseDNS no
X11Forwarding no
AllowTcpForwarding no
MaxSessions 10
Subsystem sftp internal-sftp
LogLevel ERROR
EOF
  echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$d/host_key.pub")" >"$d/known_hosts"
  SSH_CONFIG=$d/ssh_config
  cat >"$SSH_CONFIG" <<EOF
Host bench
  HostName 127.0.0.1
  Port $SSHD_PORT
  User $me
  IdentityFile $d/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $d/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ControlPath $d/cm
  EscapeChar none
  Compression no
  ForwardAgent no
  ForwardX11 no
  LogLevel ERROR
EOF
  /usr/sbin/sshd -t -f "$d/sshd_config" 2>"$log" || { SSHD_ERR="sshd config refused: $(cat "$log")"; return 1; }
  /usr/sbin/sshd -D -e -f "$d/sshd_config" 2>"$log" &
  SSHD_PID=$!
  # The pid file is written once sshd listens.
  for _ in $(seq 150); do [[ -s $d/sshd.pid ]] && break; kill -0 "$SSHD_PID" 2>/dev/null || break; sleep 0.1; done
  [[ -s $d/sshd.pid ]] || { SSHD_ERR="sshd did not start: $(tail -3 "$log" | tr '\n' ' ')"; return 1; }
  return 0
}
