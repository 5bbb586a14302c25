# One image for both services: `python -m trainer_service` and `python -m sampler_service`
# (and `tensorboard`). docker-compose.yml builds it; README "Running with Docker Compose".
#
#   docker build -t gan-services .                               # PyPI and the public base image
#   docker build -t gan-services --build-arg BASE_IMAGE=gan-local/python:3.11-bookworm \
#       --build-arg PIP_WHEELHOUSE=wheelhouse .                 # no registry, no PyPI in the build
#
# Build arguments:
#   BASE_IMAGE      a Debian bookworm image with python3 (3.11) and its venv module: the official
#                   python:3.11-slim-bookworm (default) or one that docker/make-base-image.sh makes
#                   with debootstrap (Debian's /usr/bin/python3)
#   PIP_WHEELHOUSE  a folder of wheels in the build context whose name starts with "wheelhouse"
#                   (docker/download-wheelhouse.sh); pip then installs with --no-index from it.
#                   The default, docker/no-wheelhouse, means "install from PyPI".
#   TF_PACKAGE      replaces requirements.txt's tensorflow lines, e.g. "tensorflow[and-cuda]==2.21.0"
#                   for the GPU image (docker-compose.gpu.yml)
#   DEBIAN_MIRROR   replaces http://deb.debian.org in the apt sources, e.g. http://mirror.example
#
# No `# syntax=` line and no RUN --mount: it builds with the legacy builder that docker-compose v1
# uses, and without pulling a frontend image.

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
ENV LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
ARG DEBIAN_MIRROR=
RUN if [ -n "$DEBIAN_MIRROR" ]; then \
        sed -i "s#http://deb.debian.org#${DEBIAN_MIRROR%/}#g" \
            /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true; \
    fi


# --- Python packages, in a virtual environment (wheels only: no compiler needed) ---
FROM base AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Whichever python3 the base has: /usr/local/bin (official image) or /usr/bin (Debian's).
RUN python3 -m venv /opt/venv
ARG PIP_WHEELHOUSE=docker/no-wheelhouse
ARG TF_PACKAGE=
COPY requirements.txt /build/requirements.txt
COPY ${PIP_WHEELHOUSE}/ /build/wheelhouse/
RUN set -eu; \
    cd /build; \
    if [ -n "$TF_PACKAGE" ]; then \
        grep -viE '^[[:space:]]*tensorflow([-_]cpu)?[[:space:]]*([=<>!~;[]|$)' requirements.txt >requirements.image.txt; \
        echo "$TF_PACKAGE" >>requirements.image.txt; \
    else \
        cp requirements.txt requirements.image.txt; \
    fi; \
    if [ "$PIP_WHEELHOUSE" = docker/no-wheelhouse ]; then \
        pip install --quiet --only-binary=:all: -r requirements.image.txt; \
    else \
        pip install --quiet --only-binary=:all: --no-index --find-links /build/wheelhouse -r requirements.image.txt; \
    fi; \
    TF_CPP_MIN_LOG_LEVEL=2 python -c "import grpc, numpy, PIL, tensorflow; print('tensorflow', tensorflow.__version__, 'grpc', grpc.__version__)"

# The runtime's packages: the same, less the protobuf compiler (only the build generates code).
FROM builder AS runtime-venv
RUN pip uninstall --quiet --yes grpcio-tools


# --- Source, with the generated gRPC code (a build output: generated here, never copied in) ---
FROM builder AS source
WORKDIR /app
COPY pyproject.toml requirements.txt ./
COPY protos protos
COPY gan_common gan_common
COPY client client
COPY sampler_service sampler_service
COPY trainer_service trainer_service
RUN python -m protos.generate \
    && python -m compileall -q /app \
    && python -c "import protos.gan.v1.sampler_pb2_grpc, protos.gan.v1.trainer_pb2_grpc"


# --- Runtime: no compiler, no pip downloads, no wheelhouse; runs as an unprivileged user ---
FROM base AS runtime
ARG DEBIAN_FRONTEND=noninteractive
# dataset-fashion-mnist: the default dataset works offline (/usr/share/datasets/fashion-mnist).
# tini: PID 1 that forwards SIGTERM, so `docker stop` lets the trainer checkpoint and publish.
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends dataset-fashion-mnist tini >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && useradd --uid 10001 --user-group --create-home --home-dir /home/gan --shell /usr/sbin/nologin gan \
    && mkdir -p /store \
    && chown gan:gan /store
COPY --from=runtime-venv /opt/venv /opt/venv
COPY --from=source /app /app
WORKDIR /app
USER gan
# No VOLUME line (it would leave an anonymous volume behind every `docker run`); a fresh named
# volume mounted on /store takes over this folder's owner, gan.
ENV GAN_TRAINER_STORE=/store \
    GAN_TRAINER_HOST=0.0.0.0 \
    GAN_TRAINER_PORT=50052 \
    GAN_SAMPLER_STORE=/store \
    GAN_SAMPLER_HOST=0.0.0.0 \
    GAN_SAMPLER_PORT=50051
EXPOSE 50051 50052 6006
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "sampler_service"]
