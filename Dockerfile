# taskhook: one process serving the REST API, the callback receiver and the workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY handlers ./handlers
RUN pip install . && useradd --create-home --uid 10001 taskhook \
    && mkdir /data && chown taskhook /data

USER taskhook
WORKDIR /data
ENV TASKHOOK_CONFIG=/etc/taskhook/taskhook.yaml
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
# Mount the config at /etc/taskhook/taskhook.yaml and keep /data (the SQLite file) on a volume.
CMD ["taskhook", "serve", "--host", "0.0.0.0", "--port", "8000"]
