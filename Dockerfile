# The user-code image: the project installed with the `k8s` extra (dagster-k8s: the run launcher
# and job executor), run by Dagster's Helm chart as the code server and as every run's pod
# (deploy/README.md). No secret is baked in: the warehouse URL, the webhook keys and the rest come
# from Kubernetes Secrets at run time (deploy/helm/values.yaml).
#
# Build: docker build -t REGISTRY/bspk-pipelines:TAG .
# The base is pinned by tag; to pin it by digest too, write FROM python:3.11-slim-bookworm@sha256:...

FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml ./
COPY bspk_pipelines/ bspk_pipelines/
# A virtual environment, so that the final stage takes the installed project and nothing of the build.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ".[k8s]"


FROM python:3.11-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    BSPK_MAPPINGS_DIR=/app/mappings \
    BSPK_DATA_DIR=/data

# A fixed numeric uid/gid, matched by the pods' securityContext in deploy/helm/values.yaml.
# DAGSTER_HOME (the chart sets /opt/dagster/dagster_home) and /data must be writable by it.
RUN groupadd --system --gid 10001 bspk \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin bspk \
    && mkdir -p /app /data /opt/dagster/dagster_home \
    && chown 10001:10001 /data /opt/dagster/dagster_home

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# The brand files baked in (BSPK_MAPPINGS_DIR above); the Helm values mount a ConfigMap over
# another path instead, so brands change without a new image (deploy/README.md, "Add a brand").
COPY mappings/ mappings/
COPY workspace.yaml ./

USER 10001:10001

EXPOSE 3030

# No ENTRYPOINT: the chart passes the whole command as the container's args
# (dagster code-server start -h 0.0.0.0 -p 3030 -m bspk_pipelines.definitions); this CMD is the same
# command for `docker run`.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "bspk_pipelines.definitions"]
