#!/usr/bin/env bash
# A real single-node Apache Kafka 4 broker (KRaft, broker and controller in one process) on the
# loopback interface, for the tests that need more than the in-process mock broker.
#
# Usage: scripts/kafka.sh start      start it (if not running) and print its bootstrap address
#        scripts/kafka.sh stop       stop it (SIGTERM, then SIGKILL after a timeout), delete its data
#        scripts/kafka.sh status     say whether it runs and answers; exit 0 only if it does
#        scripts/kafka.sh bootstrap  print the bootstrap address of the running broker
#        scripts/kafka.sh bootstrap-sasl-ssl
#                                    print the address of its SASL_SSL listener (KAFKA_SASL_SSL=1)
#        scripts/kafka.sh bounce N   stop it (keeping its data), wait N seconds, start it again
#        scripts/kafka.sh fetch      only resolve the jars (e.g. to warm a CI cache)
#        scripts/kafka.sh topics ARG...
#                                    run Kafka's kafka-topics tool (TopicCommand) with ARGs, as
#                                    /opt/kafka/bin/kafka-topics.sh of the Kafka image would
#        scripts/kafka.sh transactions ARG...
#                                    run Kafka's kafka-transactions tool (TransactionsCommand) with
#                                    ARGs, e.g. `--bootstrap-server B find-hanging --broker-id 1`
#
# The jars of org.apache.kafka:kafka_2.13 and its runtime dependencies come from Maven Central
# through `mvn` (scripts/kafka/pom.xml) and are kept in .cache/kafka/<version>/libs: a second run
# does not resolve anything. Needs a JDK 17+ and Maven.
#
# Secured listener (opt-in): `KAFKA_SASL_SSL=1 scripts/kafka.sh start` adds a SASL_SSL listener on
# another free port beside the PLAINTEXT one (which stays, and keeps carrying the controller and
# inter-broker traffic). The script makes, under $KAFKA_STATE_DIR/tls: a CA (ca.key, ca.pem: the
# file clients give as ssl.ca.location), the broker's PKCS12 keystore (keytool, a certificate for
# 127.0.0.1 and localhost signed by that CA), and the password of the user `tweetoscope`
# (sasl-password, random per start), who can log in with SASL PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
# The secured address goes to $KAFKA_STATE_DIR/bootstrap-sasl-ssl (also printed by
# `bootstrap-sasl-ssl`);
# tls/client.properties holds the same settings for Java clients. Needs openssl and keytool.
# Without KAFKA_SASL_SSL the broker is configured exactly as before, PLAINTEXT only.
#
# Environment:
#   KAFKA_VERSION          Kafka version (default 4.4.0)
#   KAFKA_PORT             client port on 127.0.0.1 (default 19092, or the next free one when 19092
#                          is taken; an explicit KAFKA_PORT that is taken is an error)
#   KAFKA_CONTROLLER_PORT  controller port (default: the next free port after the client port)
#   KAFKA_SASL_SSL         1: add the SASL_SSL listener described above (default: none)
#   KAFKA_SASL_SSL_PORT    its port (default: the next free port after the controller port)
#   KAFKA_STATE_DIR        where the pid, bootstrap, config and logs go (default .cache/kafka/state);
#                          logs/server.log is the running broker's, server.before-*.log those of
#                          the five starts before it (bounces)
#   KAFKA_HEAP             JVM heap options (default "-Xms256m -Xmx512m")
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 120)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=${KAFKA_VERSION:-4.4.0}
cache="$root/.cache/kafka"
libs="$cache/$version/libs"
state=${KAFKA_STATE_DIR:-$cache/state}
host=127.0.0.1

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

port_in_use() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

# The first port from $1 on that nobody listens to (and that is not $2).
free_port_from() {
  local p=$1 skip=${2:-0}
  while ((p < $1 + 200)); do
    if ((p != skip)) && ! port_in_use "$p"; then
      echo "$p"
      return 0
    fi
    p=$((p + 1))
  done
  die "no free port in $1..$((p - 1))"
}

need_java() {
  command -v java >/dev/null || die "java not found: Kafka $version needs a JDK 17 or newer"
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [[ ${v%%.*} -ge 17 ]] 2>/dev/null || die "Kafka $version needs Java 17 or newer, found ${v:-unknown}"
}

fetch() {
  # A cache made before kafka-tools was in the pom is resolved again.
  if [[ -f "$libs/.complete" && -f "$libs/kafka-tools-$version.jar" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found: Maven resolves the Kafka jars (apt-get install maven)"
  log "resolving org.apache.kafka:kafka_2.13:$version and its dependencies with Maven"
  rm -rf "$libs"
  mkdir -p "$libs"
  local out="$cache/$version/mvn.log"
  if ! mvn -B -q -f "$root/scripts/kafka/pom.xml" \
    -Dkafka.version="$version" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs" >"$out" 2>&1; then
    tail -n 30 "$out" >&2
    die "cannot resolve Kafka $version (full output: $out)"
  fi
  ls "$libs"/kafka_2.13-"$version".jar >/dev/null 2>&1 || die "no kafka_2.13-$version.jar in $libs"
  ls "$libs"/kafka-tools-"$version".jar >/dev/null 2>&1 || die "no kafka-tools-$version.jar in $libs"
  touch "$libs/.complete"
  log "$(find "$libs" -name '*.jar' | wc -l) jars in $libs"
}

running_pid() {
  local pid
  [[ -f "$state/pid" ]] || return 1
  pid=$(<"$state/pid")
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# Whether the broker at $1 answers within $2 ms; $3: client properties of a secured listener.
ready() {
  java -cp "$libs/*" "$root/scripts/kafka/Ready.java" "$1" "${2:-5000}" ${3:+"$3"}
}

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Makes $state/tls afresh: a CA, the broker's keystore with a certificate it signed, the password
# of the user `tweetoscope`, and client.properties for Java clients (Ready.java).
make_tls() {
  local dir="$state/tls" sasl_address=$1
  command -v openssl >/dev/null || die "openssl not found: KAFKA_SASL_SSL=1 makes its certificates with it"
  command -v keytool >/dev/null || die "keytool not found: it comes with the JDK"
  rm -rf "$dir"
  mkdir -p "$dir"
  chmod 700 "$dir"
  local store_pass
  store_pass=$(random_hex 12)
  echo "$store_pass" >"$dir/keystore-password"
  random_hex 16 >"$dir/sasl-password"
  local san="IP:$host,DNS:localhost"
  if ! (
    cd "$dir"
    set -x
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 -subj "/CN=Tweetoscope test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.pem
    keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 30 -dname "CN=localhost" \
      -ext "SAN=$san" -keystore broker.p12 -storetype PKCS12 -storepass "$store_pass"
    keytool -certreq -alias broker -ext "SAN=$san" -keystore broker.p12 -storepass "$store_pass" \
      -file broker.csr
    openssl x509 -req -sha256 -days 30 -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san") -out broker.pem
    keytool -importcert -noprompt -alias ca -file ca.pem -keystore broker.p12 -storepass "$store_pass"
    keytool -importcert -noprompt -alias broker -file broker.pem -keystore broker.p12 \
      -storepass "$store_pass"
  ) >"$state/logs/tls.out" 2>&1; then
    cat "$state/logs/tls.out" >&2
    die "cannot make the certificates in $dir"
  fi
  cat >"$dir/client.properties" <<EOF
# Generated by scripts/kafka.sh: a Java client of the SASL_SSL listener $sasl_address.
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="tweetoscope" password="$(<"$dir/sasl-password")";
ssl.truststore.type=PEM
ssl.truststore.location=$dir/ca.pem
EOF
}

start() {
  local pid
  if pid=$(running_pid); then
    log "already running (pid $pid)"
    cat "$state/bootstrap"
    return 0
  fi
  need_java
  fetch
  mkdir -p "$state/logs"
  rm -f "$state/pid" "$state/bootstrap" "$state/bootstrap-sasl-ssl"
  rm -rf "$state/tls"
  if [[ -f "$state/data_dir" ]]; then
    rm -rf "$(<"$state/data_dir")"
  fi

  local port cport
  if [[ -n "${KAFKA_PORT:-}" ]]; then
    port=$KAFKA_PORT
    ! port_in_use "$port" || die "port $port (KAFKA_PORT) is in use"
  else
    port=$(free_port_from 19092)
  fi
  if [[ -n "${KAFKA_CONTROLLER_PORT:-}" ]]; then
    cport=$KAFKA_CONTROLLER_PORT
    ! port_in_use "$cport" || die "port $cport (KAFKA_CONTROLLER_PORT) is in use"
  else
    cport=$(free_port_from $((port + 1)) "$port")
  fi
  local secured=${KAFKA_SASL_SSL:-0} sport="" listeners="PLAINTEXT://$host:$port"
  local protocols="PLAINTEXT:PLAINTEXT"
  case "$secured" in
    0 | "") secured="" ;;
    1)
      if [[ -n "${KAFKA_SASL_SSL_PORT:-}" ]]; then
        sport=$KAFKA_SASL_SSL_PORT
        ! port_in_use "$sport" || die "port $sport (KAFKA_SASL_SSL_PORT) is in use"
      else
        sport=$(free_port_from $((cport + 1)) "$port")
      fi
      listeners+=",SASL_SSL://$host:$sport"
      protocols+=",SASL_SSL:SASL_SSL"
      make_tls "$host:$sport"
      ;;
    *) die "KAFKA_SASL_SSL must be 0 or 1, not '$secured'" ;;
  esac

  local data
  data=$(mktemp -d "${TMPDIR:-/tmp}/tweetoscope-kafka.XXXXXX")
  echo "$data" >"$state/data_dir"
  cat >"$state/server.properties" <<EOF
# Generated by scripts/kafka.sh: one node that is both broker and controller (KRaft).
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$host:$cport
listeners=$listeners,CONTROLLER://$host:$cport
advertised.listeners=$listeners,CONTROLLER://$host:$cport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols,CONTROLLER:PLAINTEXT
log.dirs=$data
num.partitions=4
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=67108864
EOF
  local scram=()
  if [[ -n "$secured" ]]; then
    local tls="$state/tls" password
    password=$(<"$tls/sasl-password")
    cat >>"$state/server.properties" <<EOF
# KAFKA_SASL_SSL=1: the listener SASL_SSL (TLS with this CA-signed certificate; SASL PLAIN,
# SCRAM-SHA-256 or SCRAM-SHA-512 as the user tweetoscope, whose SCRAM credentials are added at
# format time).
listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_tweetoscope="$password";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$tls/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$(<"$tls/keystore-password")
listener.name.sasl_ssl.ssl.key.password=$(<"$tls/keystore-password")
EOF
    scram=(--add-scram "SCRAM-SHA-256=[name=tweetoscope,password=$password]"
      --add-scram "SCRAM-SHA-512=[name=tweetoscope,password=$password]")
  fi

  local cluster_id
  # A random UUID in Kafka's URL-safe base64. It can begin with '-', hence `--cluster-id=ID`: as a
  # separate argument, the option parser would read it as another option.
  cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  local jvm
  jvm_command
  if ! "${jvm[@]}" kafka.tools.StorageTool format --standalone "--cluster-id=$cluster_id" \
    --config "$state/server.properties" "${scram[@]}" >"$state/logs/format.out" 2>&1; then
    cat "$state/logs/format.out" >&2
    die "cannot format the storage in $data"
  fi

  launch "$host:$port" "$host:$cport"
}

# Sets the array `jvm` to the java command line of the broker's tools and server.
jvm_command() {
  local heap
  read -r -a heap <<<"${KAFKA_HEAP:--Xms256m -Xmx512m}"
  jvm=(java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$root/scripts/kafka/log4j2.properties"
    "-Dkafka.logs.dir=$state/logs" -cp "$libs/*")
}

# Starts the JVM on the formatted storage of $state/server.properties and waits until it answers.
launch() {
  local address=$1 controller=$2
  local jvm
  jvm_command
  # The log of the previous start (a bounce) is kept beside the new one, the five newest of them:
  # a fault test that fails after a bounce needs the broker's side of the outage.
  if [[ -s "$state/logs/server.log" ]]; then
    mv "$state/logs/server.log" "$state/logs/server.before-$(date -u +%Y%m%dT%H%M%S.%NZ).log"
    # shellcheck disable=SC2012 # names made above: no spaces or newlines
    ls -1t "$state/logs"/server.before-*.log | tail -n +6 | xargs -r rm -f
  fi
  : >"$state/logs/server.log"
  # setsid: the broker has its own session, so a Ctrl-C in the caller's terminal does not reach it
  # before `stop` does; the pid written is the JVM's (bash execs it).
  # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$state/pid" \
    "${jvm[@]}" kafka.Kafka "$state/server.properties" \
    >"$state/logs/kafka.out" 2>&1 </dev/null &
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
  while [[ ! -s "$state/pid" ]] && ((SECONDS < deadline)); do sleep 0.1; done
  log "Kafka $version starting on $address (controller $controller, pid $(<"$state/pid"), data $(<"$state/data_dir"))"

  until grep -q "Kafka Server started" "$state/logs/server.log" 2>/dev/null; do
    if ! running_pid >/dev/null; then
      tail -n 40 "$state/logs/server.log" "$state/logs/kafka.out" >&2 || true
      die "the broker exited during start-up (logs in $state/logs)"
    fi
    ((SECONDS < deadline)) || {
      stop
      die "the broker did not start within ${KAFKA_START_TIMEOUT:-120} s"
    }
    sleep 0.5
  done
  until ready "$address" 3000 >/dev/null 2>"$state/logs/ready.err"; do
    ((SECONDS < deadline)) || {
      cat "$state/logs/ready.err" >&2
      stop
      die "the broker does not answer metadata requests on $address"
    }
    sleep 1
  done
  local secured
  secured=$(sed -n 's/^listeners=.*SASL_SSL:\/\/\([^,]*\).*/\1/p' "$state/server.properties")
  if [[ -n "$secured" ]]; then
    until ready "$secured" 3000 "$state/tls/client.properties" >/dev/null 2>"$state/logs/ready.err"; do
      ((SECONDS < deadline)) || {
        cat "$state/logs/ready.err" >&2
        stop
        die "the broker does not answer SCRAM-SHA-512 clients on its SASL_SSL listener $secured"
      }
      sleep 1
    done
    echo "$secured" >"$state/bootstrap-sasl-ssl"
    log "SASL_SSL listener: $secured (CA $state/tls/ca.pem, user tweetoscope, password in $state/tls/sasl-password)"
  fi
  echo "$address" >"$state/bootstrap"
  log "ready: $address (logs in $state/logs)"
  echo "$address"
}

# Stops the running broker cleanly, keeps its data and configuration, waits $1 seconds, and starts
# it again on the same ports: a broker that goes away and comes back.
bounce() {
  local down=${1:?usage: kafka.sh bounce SECONDS}
  local pid address controller
  pid=$(running_pid) || die "not running"
  address=$(<"$state/bootstrap")
  controller=$(sed -n 's/^controller.quorum.bootstrap.servers=//p' "$state/server.properties")
  log "bouncing the broker (pid $pid): down for $down s"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-30}))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$state/pid" "$state/bootstrap" "$state/bootstrap-sasl-ssl"
  sleep "$down"
  launch "$address" "$controller" >/dev/null
  log "back after $down s"
}

stop() {
  local pid
  if pid=$(running_pid); then
    log "stopping the broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-30}))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "still running after ${KAFKA_STOP_TIMEOUT:-30} s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  else
    log "not running"
  fi
  if [[ -f "$state/data_dir" ]]; then
    rm -rf "$(<"$state/data_dir")"
    rm -f "$state/data_dir"
  fi
  rm -f "$state/pid" "$state/bootstrap" "$state/bootstrap-sasl-ssl"
}

status() {
  local pid
  if ! pid=$(running_pid); then
    echo "not running"
    return 3
  fi
  local bootstrap
  bootstrap=$(cat "$state/bootstrap" 2>/dev/null || true)
  if [[ -z "$bootstrap" ]]; then
    echo "starting (pid $pid)"
    return 1
  fi
  if ready "$bootstrap"; then
    echo "running (pid $pid) at $bootstrap, Kafka $version"
    if [[ -s "$state/bootstrap-sasl-ssl" ]]; then
      echo "SASL_SSL listener at $(<"$state/bootstrap-sasl-ssl")"
    fi
  else
    echo "running (pid $pid) at $bootstrap but not answering"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  bounce) bounce "${2:-}" ;;
  bootstrap)
    running_pid >/dev/null && [[ -s "$state/bootstrap" ]] || die "no broker is running"
    cat "$state/bootstrap"
    ;;
  bootstrap-sasl-ssl)
    running_pid >/dev/null && [[ -s "$state/bootstrap" ]] || die "no broker is running"
    [[ -s "$state/bootstrap-sasl-ssl" ]] ||
      die "the broker has no SASL_SSL listener: start it with KAFKA_SASL_SSL=1"
    cat "$state/bootstrap-sasl-ssl"
    ;;
  fetch)
    fetch
    echo "$libs"
    ;;
  topics)
    shift
    fetch
    exec java -Xmx256m "-Dlog4j2.configurationFile=$root/scripts/kafka/tools-log4j2.properties" \
      -cp "$libs/*" org.apache.kafka.tools.TopicCommand "$@"
    ;;
  transactions)
    shift
    fetch
    exec java -Xmx256m "-Dlog4j2.configurationFile=$root/scripts/kafka/tools-log4j2.properties" \
      -cp "$libs/*" org.apache.kafka.tools.TransactionsCommand "$@"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
