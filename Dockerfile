# dbss-reboot-bot: one image for every mode of `python -m bot` (http, socket, check, console, simulator).
# Build: docker build -t dbss-reboot-bot:0.1.0 .   Deploying it: docs/deploying.md.
# No container engine runs where this is developed: tests/test_containers.py lints this file with hadolint
# and checks it against the bot's settings, ports and modes.

# The Python that CI tests on (3.11). Pinned by tag; pin by digest too where your registry policy asks for it.
FROM python:3.11-slim-bookworm AS build

# The install CI runs (.ci/run: the locked dependencies, hash-checked, in a venv), in its production form:
# requirements/runtime.txt is the runtime set of the same lock (uv.lock), without the test extra. Every package
# comes at the version and with the hash the lock names, so a rebuild next month installs this month's bot.
# The bot itself is not built into a package: its source is copied below, as CI runs it from the checkout.
WORKDIR /src
COPY requirements/runtime.txt ./requirements/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --require-hashes -r requirements/runtime.txt

FROM python:3.11-slim-bookworm

# A system user with a fixed numeric ID: Kubernetes' runAsNonRoot can only verify a numeric user, and
# `python -m bot console` asks the password database for the user's name. /run/secrets is where the
# settings read secret files from (a Kubernetes Secret volume mounts over it; Compose puts its secrets in
# it); empty here.
RUN groupadd --system --gid 10001 bot \
    && useradd --system --uid 10001 --gid bot --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin bot \
    && mkdir /data /run/secrets \
    && chown bot:bot /data

COPY --from=build /opt/venv /opt/venv
COPY bot /app/bot

# PORT serves HTTP mode (Slack's POST /slack/events, /healthz, /readyz, /metrics); BOT_HEALTH_PORT serves
# /healthz, /readyz and /metrics in Socket Mode. The state file lives on the /data volume: keep it on
# block storage (a disk, EBS, EVS), never on NFS, EFS or SFS, where SQLite's WAL locking is unsafe.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BOT_STATE_PATH=/data/state.sqlite3 \
    PORT=3000 \
    BOT_HEALTH_PORT=8080

# Declared after the chown above: Docker copies /data's owner into a new named volume.
VOLUME /data
WORKDIR /app
USER 10001:10001
EXPOSE 3000 8080

# Ready when /readyz answers 2xx on PORT (HTTP mode) or on BOT_HEALTH_PORT (Socket Mode): the image does not
# know which mode it was started in, and only one of the two ports is open. Python's urllib, no curl.
# The simulator serves neither: compose.yaml gives it a health check of its own.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request\nfor port in (os.environ.get('PORT', '3000'), os.environ.get('BOT_HEALTH_PORT', '8080')):\n    try:\n        urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=2)\n    except OSError:\n        continue\n    sys.exit(0)\nsys.exit(1)"]

# No mode given: Socket Mode when SLACK_APP_TOKEN is set, else HTTP (the bot's own rule). Name a mode to pin
# it, or run another: `docker run IMAGE socket`, `docker run IMAGE check`.
ENTRYPOINT ["python", "-m", "bot"]
