# zart-es: one image for workers, the API and the CLI.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY zart_es ./zart_es
COPY workers ./workers
# the archive (retention to Parquet, audit queries), traces and encryption at rest: the
# extras a production worker or API may be configured to use
# (DL3013 asks to pin versions: this installs the project itself, whose dependencies
# pyproject.toml bounds; hadolint does not read a local path with extras as one)
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --prefix=/install ".[archive,otel,encryption]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 zart
COPY --from=build /install /usr/local
USER 10001
WORKDIR /home/zart
ENV PYTHONUNBUFFERED=1 ZART_LOG_LEVEL=INFO
EXPOSE 8000 9100
HEALTHCHECK --interval=30s --timeout=5s CMD ["zart-es", "health"]
ENTRYPOINT ["zart-es"]
CMD ["worker", "--app", "workers.examples"]
