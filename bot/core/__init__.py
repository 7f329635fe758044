"""The Slack-free domain: command parsing, access policy, confirmations, state and the reboot flow."""
