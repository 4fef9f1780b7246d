# The airgrid collector image for deploy/compose.yaml (build context: the repository root).
# REGISTRY: a registry mirror in front of Docker Hub, with its trailing slash
# (e.g. docker.m.daocloud.io/); PIP_INDEX_URL: a PyPI mirror. Both optional.
ARG REGISTRY=
FROM ${REGISTRY}python:3.11-slim
# An ARG is in the environment of the RUN steps below (pip reads PIP_INDEX_URL), not of
# the image.
ARG PIP_INDEX_URL=https://pypi.org/simple
WORKDIR /src
COPY pyproject.toml README.md ./
COPY airgrid ./airgrid
COPY collector ./collector
COPY alert_rules ./alert_rules
COPY edge_agent ./edge_agent
COPY firmware_sim ./firmware_sim
COPY grafana ./grafana
COPY orchestration ./orchestration
COPY report ./report
# The report (airgrid-report) runs from the same image: matplotlib and Noto Sans CJK.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-noto-cjk fontconfig \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir '.[collector,report]' && rm -rf /src \
    && useradd --system --uid 10001 --home-dir /var/lib/airgrid airgrid \
    && install -d -o airgrid -g airgrid -m 0700 /var/lib/airgrid
USER 10001:10001
WORKDIR /var/lib/airgrid
ENTRYPOINT ["airgrid-collector"]
CMD ["run", "--config", "/etc/airgrid/collector.toml"]
