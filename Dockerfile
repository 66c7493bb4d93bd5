# One image for the API, the Dagster webserver and the Dagster daemon (docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 DO_NOT_TRACK=1 DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    DAGSTER_HOME=/opt/dagster/home
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tributary tributary
COPY ingest_api ingest_api
COPY orchestration orchestration
COPY dbt_project dbt_project
COPY workspace.yaml ./
RUN pip install --no-cache-dir -e . \
 && cd dbt_project && dbt parse --profiles-dir . --quiet
COPY deploy/dagster.yaml /opt/dagster/home/dagster.yaml
EXPOSE 8000 3000
CMD ["tributary", "api", "--host", "0.0.0.0"]
