"""A local DBSS + IAM simulator: the test fake, the demo's backend, and `python -m bot simulator`."""

from bot.simulator.dbss import (
    DEMO_AK,
    DEMO_AP_PROJECT_ID,
    DEMO_PROJECT_ID,
    DEMO_SK,
    DEMO_TOKEN,
    Cloud,
    DbssSimulator,
    SimInstance,
    demo_second_region,
    with_demo_instances,
)

__all__ = [
    "DEMO_AK",
    "DEMO_AP_PROJECT_ID",
    "DEMO_PROJECT_ID",
    "DEMO_SK",
    "DEMO_TOKEN",
    "Cloud",
    "DbssSimulator",
    "SimInstance",
    "demo_second_region",
    "with_demo_instances",
]
