# syntax=docker/dockerfile:1
# The agent's container image (BuildKit, the default builder since Docker 23):
#
#   docker build -t agent:0.1.0 .                                   root: reads a node's /var/log (the DaemonSet)
#   docker build -t agent:0.1.0-nonroot --build-arg AGENT_USER=agent .   uid 10001, group adm: for a VM
#
# Both stages run packaging/image/install.sh, which the tests run too (tests/integration/test_image_install.py).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Stage 1: the agent's wheel and a binary wheel of every dependency. Nothing is compiled.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY packaging/image/install.sh /usr/local/bin/agent-install
COPY pyproject.toml README.md /src/
COPY agent /src/agent
RUN sh /usr/local/bin/agent-install wheel /src /wheels

# Stage 2: the image. Python and the agent's virtualenv, installed from stage 1's wheels without an index;
# no compiler, no wheels and no source are left in it.
FROM ${PYTHON_IMAGE} AS agent
# root reads every log under /var/log (files of other users included); `agent` (uid 10001, in group adm,
# which owns the host's syslog files on Debian and Ubuntu) suits a VM where only the agent's own data dir
# is writable and the logs it follows are readable by adm.
ARG AGENT_USER=root
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/agent/bin:$PATH \
    AGENT_DATA_DIR=/var/lib/agent \
    AGENT_API_ADDRESS=0.0.0.0:2020
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=packaging/image/install.sh,target=/tmp/agent-install \
    sh /tmp/agent-install install /wheels /opt/agent \
    && useradd --system --uid 10001 --user-group --groups adm --no-create-home --home-dir /var/lib/agent \
       --shell /usr/sbin/nologin agent \
    && mkdir -p /etc/agent /var/lib/agent \
    && chown agent:agent /var/lib/agent
# The embedded default pipeline (container and host logs to the console); mount your own over it.
COPY agent/default_pipeline.yaml /etc/agent/pipeline.yaml
USER ${AGENT_USER}
WORKDIR /var/lib/agent
EXPOSE 2020
# No curl in a slim image: Python asks /health (200 while the process serves, degraded components included).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('AGENT_HEALTH_URL', 'http://127.0.0.1:2020/health'), timeout=4)"]
# SIGTERM drains: sources stop, buffers flush within shutdown_timeout, checkpoints are written.
STOPSIGNAL SIGTERM
ENTRYPOINT ["agent"]
CMD ["run", "-c", "/etc/agent/pipeline.yaml"]
