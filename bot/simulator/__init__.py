"""A local DBSS + IAM simulator: the test fake, the demo's backend, and `python -m bot simulator`."""

from bot.simulator.dbss import DEMO_PROJECT_ID, DEMO_TOKEN, Cloud, DbssSimulator, SimInstance, with_demo_instances

__all__ = ["DEMO_PROJECT_ID", "DEMO_TOKEN", "Cloud", "DbssSimulator", "SimInstance", "with_demo_instances"]
