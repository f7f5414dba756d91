# One image for every Gavel service: the worker, the monitor, the trainer, the replayer,
# the one-shot init job and the MLflow server (mlflow is a Gavel dependency).
#
#   docker build -t gavel .
#   docker run --rm gavel --help
#
# docker-compose.yml builds it and picks the service through the command.

ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# 1. Dependencies only, pinned by constraints.txt: this layer is rebuilt when pyproject.toml
#    or constraints.txt change, not on every source edit. Every dependency ships wheels, so
#    no compiler is needed.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2. Gavel itself. pyproject.toml is listed again so that the README* glob (the package's
#    long description) never leaves this COPY without a source when there is no README.
COPY pyproject.toml README* ./
COPY gavel/ gavel/
COPY producers/ producers/
COPY stream_app/ stream_app/
COPY monitor/ monitor/
COPY trainer/ trainer/
COPY deploy/ deploy/
RUN pip install --no-deps -c constraints.txt . \
    && pip check \
    && gavel --help > /dev/null

# 3. Run as an unprivileged user. Writable places:
#    /var/lib/gavel  working directory (the Faust worker keeps its data dir in the cwd)
#    /reports        the monitor's Evidently reports (a volume in docker-compose.yml)
#    /data           the MLflow server's sqlite database and artifacts (a volume too)
#    Named volumes mounted on these paths inherit their ownership on first use.
RUN useradd --create-home --uid 10001 --user-group gavel \
    && mkdir -p /var/lib/gavel /reports /data/artifacts \
    && chown -R gavel:gavel /var/lib/gavel /reports /data

# Inside a container the services must listen on every interface to be reachable.
ENV GAVEL_BIND_HOST=0.0.0.0 \
    GAVEL_REPORTS_DIR=/reports \
    GAVEL_STACK__DIR=/var/lib/gavel/.stack \
    MPLCONFIGDIR=/tmp/matplotlib

USER gavel
WORKDIR /var/lib/gavel

# Worker HTTP (predict, health, metrics), monitor metrics, MLflow.
EXPOSE 6066 9108 5000

ENTRYPOINT ["gavel"]
CMD ["--help"]
