"""The fake DBSS + IAM of the tests is the simulator that `python -m bot demo` and `simulator` run.

One piece of code, so the demo and a Slack-connected trial honour exactly the contract the tests check.
"""

from bot.simulator.dbss import IAM_PATH, LIST_RE, REBOOT_RE, Cloud, DbssSimulator, SimInstance, TemporaryKey

FakeDbss = DbssSimulator
FakeInstance = SimInstance

__all__ = ["IAM_PATH", "LIST_RE", "REBOOT_RE", "Cloud", "FakeDbss", "FakeInstance", "TemporaryKey"]
