# The back-pain CDS service under its production server (`cds-service serve`: granian).
# Stage 1 builds the wheel; stage 2 installs it with its runtime dependencies only (no build
# tools, no test extras) and runs as a non-root user. The fixture library is copied too, so the
# same image can load it into a FHIR server (`cds-service fixtures load`, see docker-compose.yml);
# examples/ holds ready trusted-client files (README "Security").
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
COPY cards ./cards
# The scenarios and requests of the fixture library ship in the wheel, for /preview.
COPY fhir_fixtures ./fhir_fixtures
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 --user-group cds
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY examples ./examples
COPY fhir_fixtures ./fhir_fixtures
# Without CDS_DATABASE_URL, the decision log and feedback store is a SQLite file on this
# volume (writable also with a read-only root file system); docker-compose.yml uses PostgreSQL.
# The spool (cards a stopping worker could not store) lives there too, whatever the store.
RUN mkdir /data && chown 10001:10001 /data
ENV CDS_DATABASE_URL=sqlite:////data/cds-decisions.db \
    CDS_SPOOL_DIR=/data/spool
VOLUME /data

USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status == 200 else 1)"]
CMD ["cds-service", "serve", "--host", "0.0.0.0", "--port", "8080"]
