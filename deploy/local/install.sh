#!/usr/bin/env bash
# Install what the local stack needs, only when missing (idempotent, quiet unless failing):
# Debian packages (PostgreSQL, nginx, JDK, Maven, curl; Chromium and its ChromeDriver, and npm, for
# the browser tests; prometheus for its promtool, daemon not started), the Kafka broker's jars (Maven Central), the project venv (uv sync
# --all-packages), axe-core (the npm registry, pinned in deploy/browser/package-lock.json, into
# .local/npm), and the `docker compose` CLI plugin (built from its Go module) when a docker CLI
# without it is present: `docker compose config` validates docker-compose.yml without any engine;
# the Strimzi and CloudNativePG CRDs into .local/crds (k8s_crds).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOG="$LOGS/install.log"
: >"$LOG"

run() { "$@" >>"$LOG" 2>&1 || { tail_log "$LOG"; die "failed: $*"; }; }

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

apt_packages() {
  local pkgs=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || pkgs+=(postgresql postgresql-contrib)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || pkgs+=(nginx-light)
  command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || pkgs+=(maven)
  command -v curl >/dev/null || pkgs+=(curl)
  # the browser tests (tests/browser): Debian's Chromium with the ChromeDriver of the same version
  # (chromium-driver depends on that exact chromium), never a browser downloaded by a test tool
  [ -x /usr/bin/chromium ] || pkgs+=(chromium)
  [ -x /usr/bin/chromedriver ] || pkgs+=(chromium-driver)
  command -v npm >/dev/null || pkgs+=(npm)
  # the benchmarks' outside load generator (bench/auth.py)
  command -v wrk >/dev/null || pkgs+=(wrk)
  [ ${#pkgs[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${pkgs[*]}"
  run sudo_ apt-get update -q
  if ! sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${pkgs[@]}" >>"$LOG" 2>&1; then
    # nginx-light is gone from newer Debian releases: take nginx instead
    pkgs=("${pkgs[@]/nginx-light/nginx}")
    run sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
  fi
}

# A Debian package wanted only for its programs, never for its daemon: installed with every
# service start refused (a policy-rc.d that exits 101, unless the machine has one already) and its
# unit disabled afterwards. Arguments: the package, its systemd unit, the program it must leave on
# PATH, and what it is for.
tool_package_without_daemon() {
  local pkg=$1 unit=$2 program=$3 purpose=$4
  command -v "$program" >/dev/null && return 0
  echo "installing Debian's $pkg for $purpose (its daemon is not started)"
  local policy=/usr/sbin/policy-rc.d made=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | sudo_ tee "$policy" >/dev/null && sudo_ chmod 755 "$policy"
    made=1
  fi
  local rc=0
  { sudo_ apt-get update -q \
      && sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "$pkg"; } >>"$LOG" 2>&1 || rc=$?
  [ -z "$made" ] || sudo_ rm -f "$policy"
  [ "$rc" -eq 0 ] || { tail_log "$LOG"; die "failed: apt-get install $pkg"; }
  if command -v systemctl >/dev/null; then
    sudo_ systemctl disable --quiet "$unit" >>"$LOG" 2>&1 || true
  fi
  command -v "$program" >/dev/null || die "the $pkg package left no $program on PATH"
}

python_env() {
  if ! command -v uv >/dev/null; then
    echo "installing uv (pip)"
    python3 -m pip install -q uv >>"$LOG" 2>&1 \
      || run python3 -m pip install -q --break-system-packages uv
    hash -r
    command -v uv >/dev/null || PATH="$HOME/.local/bin:$PATH"
    command -v uv >/dev/null || die "uv installed but not on PATH"
  fi
  # Bytecode compiled at install (pip's default, not uv's): where PYTHONDONTWRITEBYTECODE is
  # set, as here, Python never caches it, and every process compiled SQLAlchemy, FastAPI,
  # pydantic... from source at each start (3.6 s to import a service here, 1.3 s compiled).
  (cd "$ROOT" && run uv sync --all-packages --quiet --compile-bytecode)
  run "$VENV_PY" -m compileall -q "$ROOT"/libs/*/src "$ROOT"/services/*/src
}

# axe-core, which the browser tests inject into pages (tests/browser/support.py), at the version
# of deploy/browser/package-lock.json, into .local/npm; `npm ci` again only when the lock changed
browser_assets() {
  local src="$ROOT/deploy/browser" dest="$STATE/npm"
  if [ -s "$dest/node_modules/axe-core/axe.min.js" ] \
      && cmp -s "$src/package-lock.json" "$dest/package-lock.json"; then
    return 0
  fi
  echo "installing axe-core for the browser tests (npm, into .local/npm)"
  mkdir -p "$dest"
  cp "$src/package.json" "$src/package-lock.json" "$dest/"
  (cd "$dest" && run npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  [ -s "$dest/node_modules/axe-core/axe.min.js" ] || die "npm ci left no axe-core/axe.min.js in $dest"
}

compose_plugin() {
  command -v docker >/dev/null || return 0
  docker compose version >/dev/null 2>&1 && return 0
  local go version=v2.40.3 dir build dest
  go="$(command -v go || true)"
  [ -n "$go" ] || { [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go; } || {
    echo "warning: no 'docker compose' plugin and no Go toolchain to build it" >&2
    return 0
  }
  echo "building the docker compose plugin $version from its Go module (once, ~2 min)"
  dir="$(GOFLAGS=-mod=mod "$go" mod download -json "github.com/docker/compose/v2@$version" 2>>"$LOG" \
    | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
  [ -n "$dir" ] || { tail_log "$LOG"; die "could not download github.com/docker/compose/v2@$version"; }
  build="$STATE/build/compose"
  rm -rf "$build"; mkdir -p "$(dirname "$build")"
  cp -r "$dir" "$build"; chmod -R u+w "$build"
  dest="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  mkdir -p "$dest"
  (cd "$build" && run env GOFLAGS=-buildvcs=false "$go" build -trimpath \
    -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$version" \
    -o "$dest/docker-compose" ./cmd)
  rm -rf "$build"
  docker compose version >/dev/null 2>&1 || die "docker compose plugin built but not found by docker"
}

# The operators' CRDs the dev overlay's custom resources are checked against
# (tests/deploy/test_k8s_overlays.py), into .local/crds, never committed. CloudNativePG: its Go
# module's config/crd/bases. Strimzi: no registry ships its CRD files, so they are made the way
# its release makes them, by its CRD generator (Maven Central: io.strimzi:crd-generator) from
# the model classes of its released io.strimzi:api, with the release's arguments; Strimzi 1.x
# is built for Java 21, so a JDK 21 or later (the machine's second one) runs it.
K8S_CNPG_VERSION=v1.27.1
K8S_STRIMZI_VERSION=1.2.0
k8s_crds() {
  local dest="$STATE/crds" go dir java="" cp
  local cnpg="$dest/cloudnative-pg-$K8S_CNPG_VERSION" strimzi="$dest/strimzi-$K8S_STRIMZI_VERSION"
  if [ ! -s "$cnpg/postgresql.cnpg.io_databases.yaml" ]; then
    go="$(command -v go || true)"
    [ -n "$go" ] || { [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go; } \
      || die "no Go toolchain to download CloudNativePG's CRDs (its Go module)"
    echo "downloading CloudNativePG $K8S_CNPG_VERSION's CRDs (its Go module)"
    dir="$(GOFLAGS=-mod=mod "$go" mod download -json \
      "github.com/cloudnative-pg/cloudnative-pg@$K8S_CNPG_VERSION" 2>>"$LOG" \
      | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
    [ -n "$dir" ] || { tail_log "$LOG"; die "could not download github.com/cloudnative-pg/cloudnative-pg@$K8S_CNPG_VERSION"; }
    mkdir -p "$cnpg"
    cp "$dir"/config/crd/bases/*.yaml "$cnpg/"
    chmod u+w "$cnpg"/*.yaml
  fi
  [ -s "$strimzi/045-Crd-kafkanodepool.yaml" ] && return 0
  for candidate in "${JAVA_HOME:-}/bin/java" java /usr/lib/jvm/*/bin/java; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); exit !(v[1] >= 21)}'; then
      java="$candidate"; break
    fi
  done
  [ -n "$java" ] || die "Strimzi's CRD generator needs Java 21 or later: none found (JAVA_HOME, PATH, /usr/lib/jvm)"
  echo "making Strimzi $K8S_STRIMZI_VERSION's CRDs (its generator, from Maven Central)"
  mkdir -p "$strimzi/maven"
  cat >"$strimzi/maven/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.misp</groupId><artifactId>strimzi-crds</artifactId><version>0</version>
  <dependencies>
    <dependency><groupId>io.strimzi</groupId><artifactId>api</artifactId><version>$K8S_STRIMZI_VERSION</version></dependency>
    <dependency><groupId>io.strimzi</groupId><artifactId>crd-generator</artifactId><version>$K8S_STRIMZI_VERSION</version></dependency>
  </dependencies>
</project>
POM
  (cd "$strimzi/maven" && run mvn -B -q dependency:build-classpath -Dmdep.outputFile=classpath.txt)
  cp="$(cat "$strimzi/maven/classpath.txt")"
  local m=io.strimzi.api.kafka.model
  run "$java" -cp "$cp" io.strimzi.crdgenerator.CrdGenerator --label app:strimzi \
    --label strimzi.io/crd-install:true --target-kube 1.16+ --crd-api-version v1 \
    --api-versions v1 --storage-version v1 --yaml \
    "$m.kafka.Kafka=$strimzi/040-Crd-kafka.yaml" \
    "$m.topic.KafkaTopic=$strimzi/043-Crd-kafkatopic.yaml" \
    "$m.user.KafkaUser=$strimzi/044-Crd-kafkauser.yaml" \
    "$m.nodepool.KafkaNodePool=$strimzi/045-Crd-kafkanodepool.yaml"
  [ -s "$strimzi/045-Crd-kafkanodepool.yaml" ] || die "Strimzi's CRD generator wrote no CRD"
}

apt_packages
# promtool: tests/lint/test_observability.py runs it on deploy/observability/alerts.yml.
tool_package_without_daemon prometheus prometheus.service promtool "its promtool"
# redis-server: the broker of the Celery baseline in bench/jobs.py, which starts its own on a
# free port and stops it.
tool_package_without_daemon redis-server redis-server.service redis-server "the jobs benchmark's baseline"
python_env
browser_assets
bash "$ROOT/deploy/local/kafka.sh" jars
compose_plugin
k8s_crds
ensure_env
