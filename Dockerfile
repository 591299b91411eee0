# One image for every Tweezer process: `tweezer api`, `tweezer scheduler`, `tweezer worker --qpu`.
# Built from the repository root: docker build -t tweezer .
# Without the `lab` extra: no process of a cluster runs the lab's tools (load tests, reports,
# the soak), nor their packages (the SDK, PyYAML, psutil, ...).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libmunge2: MUNGE, for qrmi's on-premises routes (the API decodes through the host's munged:
# mount /run/munge, deploy/compose.yaml). Unpinned on purpose: bookworm's security updates
# replace its version in the archive.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmunge2 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/tweezer
COPY pyproject.toml README.md ./
COPY core ./core
COPY api ./api
COPY scheduler ./scheduler
COPY workers ./workers
COPY scheduling ./scheduling
COPY lab ./lab
COPY launch ./launch
COPY cli ./cli
RUN pip install --no-compile . \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin tweezer

# Never root: the processes need nothing but the network and Redis.
USER 10001
EXPOSE 8000
ENTRYPOINT ["tweezer"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
