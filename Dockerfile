# The sidecar-supervisor image: the tool on a slim Python, run as a non-root user.
#
#   docker build -t registry.example/sidecar-supervisor:0.1.0 .
#   docker push registry.example/sidecar-supervisor:0.1.0
#
# registry.example stands for your registry: no image is published. The
# examples and `sidecar-supervisor inject --image` use the same name.
#
# Use it as it is (the examples in examples/ do: command/args or compose
# `command` choose the role), or as a base layer for your own helper:
#
#   FROM registry.example/sidecar-supervisor:0.1.0
#   COPY my-helper /usr/local/bin/my-helper
#   CMD ["sidecar", "--", "my-helper"]
#
# ENTRYPOINT is the tool itself, so CMD (Kubernetes: args) is only the role,
# its options and the COMMAND after `--`. The base image is pinned to a
# patch release; pin it by digest too (python:3.11.13-slim-bookworm@sha256:...)
# where reproducible builds matter.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
# The bundle is built on a full (non-slim) image: PyInstaller, gcc, libc6-dev and
# binutils. Its glibc is the oldest the bundle runs on: pick -bullseye (2.31) to
# reach older images.
ARG BUNDLE_IMAGE=python:3.11.13-bookworm

# --- build: the tool and its dependencies, installed under /staging ---------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# .dockerignore lets only these into the build context.
COPY pyproject.toml README.md ./
COPY supervisor/ supervisor/
# Wheels first (the only step that needs a package index: set PIP_INDEX_URL
# with --build-arg for a mirror), then installed from them alone under
# /staging exactly where they lie in the final image (/usr/local/...), with
# their bytecode compiled: a non-root user cannot write __pycache__ at run
# time, and start-up time is part of the product.
ARG PIP_INDEX_URL
RUN pip wheel --wheel-dir /wheels . \
    && pip install --no-index --ignore-installed --no-warn-script-location \
        --root /staging /wheels/*.whl \
    && python -m compileall -q -f -s /staging /staging

# --- bundle: the self-contained tool for sidecar images without Python --------
FROM ${BUNDLE_IMAGE} AS bundle

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY supervisor/ supervisor/
COPY bundle/ bundle/
ARG PIP_INDEX_URL
# build.py prints the glibc the bundle needs, measured from its libraries.
RUN pip install . pyinstaller==6.22.3 && python bundle/build.py --out /opt/sidecar-supervisor

# --- final: the installed tool and the bundle, nothing else from the build ----
FROM ${PYTHON_IMAGE}

# PYTHONDONTWRITEBYTECODE: the non-root user cannot write beside the installed
# modules anyway, and their bytecode was compiled in the build stage (start-up
# time is part of the product). PYTHONUNBUFFERED: the supervisor's JSON log
# lines reach `kubectl logs` as they happen.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The installed tool, nothing else from the build: no wheels, no pip run here.
# No RUN --mount and no `# syntax=` line, so the classic builder and BuildKit
# alike build this file with no registry to fetch a frontend from.
COPY --from=builder /staging/ /

RUN groupadd --gid 10001 supervisor \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin supervisor \
    && install -d -o 10001 -g 10001 -m 0775 /run/sidecar-supervisor

# The bundle, for `sidecar-supervisor copy DEST` in an init container: it puts
# the tool on a shared emptyDir for sidecars whose images have no Python.
COPY --from=bundle /opt/sidecar-supervisor /opt/sidecar-supervisor

# /run/sidecar-supervisor, the default --dir, is made above and owned by the
# user: a compose named volume mounted there starts with this owner, and a
# container without a volume still works. In Kubernetes, mount an emptyDir
# there in every container of the pod. (No VOLUME: it would give every
# container an anonymous volume of its own and freeze the path for images
# built FROM this one.)

# A number, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001

# SIGTERM is Docker's default too; it is written down because the
# supervisor's shutdown rests on it and images built FROM this one inherit it.
# The kubelet (at pod deletion) and `docker stop` send it to every container
# at once. In the main role the supervisor forwards it to COMMAND's process
# group; in the sidecar role it starts the --term-hold: the helper stays up
# until the main containers have completed (as native sidecars are stopped
# only after the mains), then it is stopped and the supervisor exits 0.
# Another stop signal would only be forwarded to the helper. For a main that
# may take long to stop, give the pod a terminationGracePeriodSeconds
# (compose: stop_grace_period) above --term-hold + --grace-period (25 + 10 s
# by default), or the runtime's SIGKILL comes first.
STOPSIGNAL SIGTERM

ENTRYPOINT ["sidecar-supervisor"]
CMD ["--help"]
