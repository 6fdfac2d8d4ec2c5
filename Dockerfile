# restore-bot: the Slack/Kakao bot, its worker, and mariadbd for sandbox servers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RESTORE_BOT_CONFIG=/etc/restore-bot/restore-bot.toml

# mariadb-client: dump loading and copying; mariadb-server: mariadbd for sandbox/stage servers
# (its own service is never started in the image). Debian's versions track security fixes:
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends mariadb-client mariadb-server curl \
 && rm -rf /var/lib/apt/lists/* /var/lib/mysql/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY restore ./restore
COPY bot ./bot
COPY handlers ./handlers
RUN pip install '.[postgres]'

RUN useradd --create-home --uid 10001 restorebot \
 && mkdir -p /var/lib/restore-bot /etc/restore-bot \
 && chown restorebot /var/lib/restore-bot
USER 10001
WORKDIR /var/lib/restore-bot

EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:3000/healthz"]
ENTRYPOINT ["restore-bot"]
CMD ["serve"]
