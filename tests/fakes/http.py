"""The loopback server the fakes are built on: the simulator's own (see bot/simulator/http.py)."""

from bot.simulator.http import Answer, LoopbackServer, Received, request_id

FakeHttpServer = LoopbackServer

__all__ = ["Answer", "FakeHttpServer", "Received", "request_id"]
