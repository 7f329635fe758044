"""dbss-reboot-bot: reboot Huawei Cloud DBSS audit instances from Slack, safely."""
