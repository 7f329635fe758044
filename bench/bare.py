"""The baseline: a bare Bolt app on the bot's own server stack whose /dbss-reboot listener only acks.

python -m bench.bare default|before   (Bolt's defaults, or process_before_response=True)
"""

from __future__ import annotations

import os
import sys

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.http_server import THREADS, serve
from bot.slack.app import wsgi_app


def build(process_before_response: bool) -> App:
    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    app = App(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=process_before_response,
    )

    @app.command("/dbss-reboot")
    def on_command(ack: Ack) -> None:
        ack()

    return app


if __name__ == "__main__":
    variant = sys.argv[1] if len(sys.argv) > 1 else "default"
    before = variant == "before"
    # Bolt's defaults hold a request thread until ack() is seen (polled every 10 ms): give that variant the
    # threads it needs, and the other the bot's own setting.
    serve(
        lambda: wsgi_app(build(before), signing_secret=os.environ["SLACK_SIGNING_SECRET"]),
        port=int(os.environ["PORT"]),
        threads=THREADS if before else 32,
    )
