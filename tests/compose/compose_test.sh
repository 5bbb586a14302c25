#!/usr/bin/env bash
# End-to-end test of docker-compose.yml: build the image, train on Fashion-MNIST in a container,
# fetch images from the host, see the sampler switch to a newer version, crash the trainer and
# restart it, and check that both times it resumes from its checkpoint.
#
#   bash tests/compose/compose_test.sh      (as root on a bare Debian machine, or as any user of a
#                                            running Docker engine)
#
# Needs a Debian mirror and PyPI, nothing else. It installs docker.io, docker-compose and
# debootstrap when missing and starts dockerd when none runs (left running afterwards). With no
# container registry reachable it builds the base image with debootstrap (kept, by tag, for the next
# run); the build always installs from a wheelhouse that the host's pip downloads (kept, with a
# stamp). It always removes its containers, network and volume, and ends with each phase's time.
#
# Environment (all optional):
#   COMPOSE                 compose command (default: "docker compose" if present, else docker-compose)
#   PYTHON                  host Python with the client's packages (default: .venv/bin/python after
#                           `./dev setup`)
#   GAN_COMPOSE_BASE_IMAGE  base image (default: python:3.11-slim-bookworm if it can be pulled,
#                           else gan-local/python:3.11-bookworm from docker/make-base-image.sh)
#   GAN_COMPOSE_WHEELHOUSE  1 (default): pip in the build installs from wheelhouse/; 0: from PyPI
#   GAN_COMPOSE_KEEP=1      on failure, leave the project up for inspection
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"

# A small fast model (the compose machinery is under test, not image quality); training never reaches
# its last step during the test.
architecture=dense
publish_every=100
checkpoint_every=10
project="gan-compose-test-$$"
local_base="gan-local/python:3.11-bookworm"

# --- phases, timings and teardown ---------------------------------------------------------------
phase_names=()
phase_seconds=()
phase_name=""
phase_started=0
test_started="$(date +%s)"
project_up=""

phase() {
    end_phase
    phase_name="$1"
    phase_started="$(date +%s)"
    echo
    echo "=== $phase_name"
}
end_phase() {
    if [[ -n "$phase_name" ]]; then
        phase_names+=("$phase_name")
        phase_seconds+=("$(($(date +%s) - phase_started))")
        phase_name=""
    fi
}
die() {
    echo "FAIL: $*" >&2
    exit 1
}
cleanup() {
    local status=$?
    set +e
    local failed_phase="$phase_name"
    if [[ -n "$project_up" ]]; then
        if ((status != 0)); then
            echo
            echo "=== logs (failed in phase: ${failed_phase:-?})"
            compose logs --no-color --tail=80 2>&1
        fi
        if ((status != 0)) && [[ "${GAN_COMPOSE_KEEP:-0}" == 1 ]]; then
            echo "GAN_COMPOSE_KEEP=1: project $project left up; remove it with:"
            echo "  ${compose_cmd[*]} -p $project -f $repo/docker-compose.yml down -v"
        else
            phase "teardown"
            compose down -v --remove-orphans -t 5 2>&1 | grep -v '^\s*$'
        fi
    fi
    end_phase
    echo
    echo "=== phase timings"
    local i
    for i in "${!phase_names[@]}"; do
        printf '%6ss  %s\n' "${phase_seconds[$i]}" "${phase_names[$i]}"
    done
    printf '%6ss  total\n' "$(($(date +%s) - test_started))"
    if ((status == 0)); then echo "PASS"; else echo "FAIL (exit $status, in phase: ${failed_phase:-?})"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_root() { if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi; }
install_packages() {
    (($#)) || return 0
    echo "installing Debian packages: $*"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- 1. Docker engine and compose -----------------------------------------------------------------
phase "docker engine"
packages=()
docker info >/dev/null 2>&1 || command -v dockerd >/dev/null || packages+=(docker.io)
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || packages+=(docker-compose)
install_packages "${packages[@]}"
if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd (log: /tmp/gan-compose-dockerd.log); it keeps running afterwards"
    as_root sh -c 'nohup dockerd >/tmp/gan-compose-dockerd.log 2>&1 &'
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || {
        tail -n 20 /tmp/gan-compose-dockerd.log >&2
        die "dockerd did not start"
    }
fi
if [[ -n "${COMPOSE:-}" ]]; then
    read -r -a compose_cmd <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    compose_cmd=(docker-compose)
fi
compose() { "${compose_cmd[@]}" -p "$project" -f "$repo/docker-compose.yml" "$@"; }
echo "engine $(docker version --format '{{.Server.Version}}'); compose: ${compose_cmd[*]}" \
    "$("${compose_cmd[@]}" version --short 2>/dev/null)"

python="${PYTHON:-$repo/.venv/bin/python}"
if ! PYTHONPATH="$repo" "$python" -c 'import client, numpy' 2>/dev/null; then
    echo "the host Python lacks the client's packages: ./dev setup"
    ./dev setup
    python="$repo/.venv/bin/python"
fi
checks() { PYTHONPATH="$repo" "$python" "$repo/tests/compose/checks.py" "$@"; }
json_field() { "$python" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# --- 2. Base image and wheelhouse -------------------------------------------------------------------
phase "base image"
if [[ -n "${GAN_COMPOSE_BASE_IMAGE:-}" ]]; then
    base="$GAN_COMPOSE_BASE_IMAGE"
elif docker image inspect python:3.11-slim-bookworm >/dev/null 2>&1 ||
    timeout 60 docker pull -q python:3.11-slim-bookworm >/dev/null 2>&1; then
    base=python:3.11-slim-bookworm
else
    echo "no registry reachable: $local_base from Debian packages (debootstrap)"
    base="$local_base"
    command -v debootstrap >/dev/null || install_packages debootstrap
    as_root bash "$repo/docker/make-base-image.sh" "$base"
fi
echo "base image: $base"

phase "wheelhouse"
if [[ "${GAN_COMPOSE_WHEELHOUSE:-1}" == 1 ]]; then
    PYTHON="$python" bash "$repo/docker/download-wheelhouse.sh" wheelhouse requirements.txt
    wheelhouse=wheelhouse
else
    echo "none: pip installs from PyPI during the build"
    wheelhouse=docker/no-wheelhouse
fi

# --- 3. Build, start, first model ---------------------------------------------------------------------
sampler_port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
target="127.0.0.1:$sampler_port"
export GAN_IMAGE=gan-services:compose-test
export GAN_BASE_IMAGE="$base"
export GAN_PIP_WHEELHOUSE="$wheelhouse"
export GAN_STORE=store
export GAN_TRAINER_DATASET=fashion_mnist
export GAN_TRAINER_DATASET_LIMIT=4096
export GAN_TRAINER_ARCHITECTURE="$architecture"
export GAN_TRAINER_BATCH_SIZE=64
export GAN_TRAINER_STEPS=1000000
export GAN_TRAINER_PUBLISH_EVERY="$publish_every"
export GAN_TRAINER_CHECKPOINT_EVERY="$checkpoint_every"
export GAN_TRAINER_SEED=1
export GAN_TRAINER_EVALUATE=false
export GAN_SAMPLER_POLL_SECONDS=1
export GAN_HEALTHCHECK_INTERVAL=2s
export SAMPLER_HOST_IP=127.0.0.1
export SAMPLER_PORT="$sampler_port"

phase "image build"
# Both services use the same image: build it once.
build_status=0
compose build trainer 2>&1 |
    { sed -u 's/\x1b\[[0-9;]*m//g' | grep -vE '^ ---> |^Removing intermediate container|^\s*$' || true; } ||
    build_status=$?
((build_status == 0)) || die "the image build failed (exit $build_status)"
echo "image $GAN_IMAGE: $(docker image inspect --format '{{.Size}}' "$GAN_IMAGE" | awk '{printf "%.2f GB", $1 / 1e9}')"

phase "up; first model served (sampler healthy)"
project_up=yes
compose up -d --no-build
trainer_id="$(compose ps -q trainer)"
sampler_id="$(compose ps -q sampler)"
[[ -n "$trainer_id" && -n "$sampler_id" ]] || die "compose did not create both containers"

health() { docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1"; }
state() { docker inspect --format '{{.State.Status}} exit={{.State.ExitCode}} restarts={{.RestartCount}}' "$1"; }
restarts() { docker inspect --format '{{.RestartCount}}' "$1"; }

# The trainer's status from inside the compose network (its port is not published on the host), as
# "state step last_checkpoint_step last_published_version"; fails while it does not answer.
trainer_status() {
    local status
    status="$(compose exec -T sampler python -m client trainer-status --target trainer:50052 --timeout 5 2>/dev/null)" ||
        return 1
    "$python" -c 'import json, sys; s = json.load(sys.stdin); print(s["state"], s["step"], s["last_checkpoint_step"], s["last_published_version"])' <<<"$status"
}
# Waits until the trainer trains again after a restart; prints its status line.
wait_until_training() {
    local line
    for _ in $(seq 120); do
        if line="$(trainer_status)" && [[ "$line" == TRAINING* ]]; then
            echo "$line"
            return 0
        fi
        sleep 1
    done
    return 1
}

for _ in $(seq 300); do
    [[ "$(health "$sampler_id")" == healthy ]] && break
    for id in "$trainer_id" "$sampler_id"; do
        if (($(restarts "$id") > 0)) || [[ "$(docker inspect --format '{{.State.Status}}' "$id")" != running ]]; then
            die "$(docker inspect --format '{{.Name}}' "$id") stopped before a first version was served: $(state "$id")"
        fi
    done
    sleep 2
done
[[ "$(health "$sampler_id")" == healthy ]] || die "sampler not healthy after 600s: $(health "$sampler_id")"
[[ "$(health "$trainer_id")" == healthy ]] || die "trainer not healthy: $(health "$trainer_id")"
info="$(checks info "$target")" || die "GetModelInfo failed"
first_version="$(json_field model_version <<<"$info")"
echo "sampler and trainer healthy; serving version $first_version: $info"

# --- 4. Images on the host; the switch to a newer version --------------------------------------------
phase "images from the host"
checks images "$target" || die "the image check failed"

phase "newer version served"
checks newer "$target" "$first_version" || die "the sampler did not switch to a newer version"

# --- 5. A crash: the restart policy brings the trainer back from its checkpoint -----------------------
phase "trainer crash; resume from checkpoint"
read -r _ step_before checkpoint_before _ < <(trainer_status) || die "no trainer status before the crash"
((checkpoint_before > 0)) || die "no checkpoint yet at step $step_before"
restarts_before="$(restarts "$trainer_id")"
# SIGKILL every process but tini (PID 1), like an out-of-memory kill: tini exits non-zero and
# `restart: on-failure` starts the container again.
compose exec -T trainer sh -c 'kill -KILL -1' || true
echo "killed the trainer (its status said: step $step_before, last checkpoint $checkpoint_before)"
for _ in $(seq 120); do
    (($(restarts "$trainer_id") > restarts_before)) && break
    sleep 1
done
(($(restarts "$trainer_id") > restarts_before)) || die "the trainer was not restarted: $(state "$trainer_id")"
read -r _ step_after _ _ < <(wait_until_training) ||
    die "the trainer did not train again after the crash: $(state "$trainer_id")"
echo "restarted by its policy (restart count $(restarts "$trainer_id")); resumed at step $step_after"
((step_after >= checkpoint_before)) ||
    die "the trainer resumed at step $step_after, before its checkpoint at step $checkpoint_before"

# --- 6. A restart: SIGTERM makes the trainer checkpoint and publish, and it resumes exactly there -----
phase "trainer restart; resume exactly"
read -r _ step_before _ _ < <(trainer_status) || die "no trainer status before the restart"
compose restart -t 120 trainer
read -r _ step_after checkpoint_after published_after < <(wait_until_training) ||
    die "the trainer did not train again after the restart: $(state "$trainer_id")"
echo "restarted at step >= $step_before; resumed at step $step_after (checkpoint $checkpoint_after," \
    "published version $published_after)"
((step_after >= step_before)) || die "the trainer went back from step $step_before to $step_after"
((checkpoint_after == step_after && published_after == step_after)) ||
    die "on SIGTERM the trainer should checkpoint and publish the step it stopped at ($step_after)"
"$python" -c 'import json, sys; assert int(sys.argv[1]) in json.load(sys.stdin)["available_versions"]' \
    "$step_after" <<<"$(checks info "$target")" || die "version $step_after (published on stop) is not served"
echo "version $step_after, published on stop, is available from the sampler"
echo "trainer $(state "$trainer_id"), $(health "$trainer_id"); sampler $(health "$sampler_id")"
