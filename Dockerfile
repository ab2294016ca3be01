# Qalby Proxy: one image for every replica and for the migration job.
#   docker build -t qalby-proxy .
#   docker run --rm -e DATABASE_URL=... -e SECRET_KEY=... -e QALBY_ENCRYPTION_KEYS=... qalby-proxy migrate
#   docker run -p 8000:8000 -e ALLOWED_HOSTS=... (same secrets) qalby-proxy
# The entry point's commands are in docker/entrypoint.sh; the README's "Deployment" section has the rest.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the virtual environment and the collected static files ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Every dependency ships a wheel for this platform, so no compiler is needed; the lock file is
# copied alone first so that a code change does not reinstall the dependencies.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir -r requirements.lock
COPY . .
# Production static storage (hashed, compressed names) needs DEBUG off. collectstatic runs only the
# static-file checks, so no secret is needed here and none is baked into a layer; QALBY_DATA_DIR
# points the embedded SQLite default, which settings prepare on import, at a throwaway folder.
# Byte code is compiled here because the root filesystem is read-only at run time.
RUN DEBUG=0 QALBY_DATA_DIR=/tmp/build-data python manage.py collectstatic --noinput \
    && python -m compileall -q . \
    && rm -rf /tmp/build-data

# ---- runtime ----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="qalby-proxy" \
      org.opencontainers.image.description="Self-hosted gateway for AI providers"
# A fixed numeric id, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 qalby \
    && useradd --system --uid 10001 --gid qalby --home-dir /app --no-create-home --shell /usr/sbin/nologin qalby \
    && mkdir /data \
    && chown qalby:qalby /data
COPY --from=build /opt/venv /opt/venv
# Code and static files stay owned by root: the server can read them, not change them.
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEBUG=0 \
    HOST=0.0.0.0 \
    PORT=8000 \
    QALBY_WORKERS=auto \
    QALBY_DATA_DIR=/data
USER 10001:10001
EXPOSE 8000
# Only used by Docker itself; Kubernetes has its own probes (chart/templates/deployment.yaml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/docker/entrypoint.sh", "healthcheck"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["serve"]
