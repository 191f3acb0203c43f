"""PagerDuty, both directions: inbound V3 webhooks applied to incidents (`inbound`), Slack-side
changes mirrored to the linked PagerDuty incident (`outbound`), and the on-call invitation
(`oncall`). Changes that came from PagerDuty are never sent back, so the two cannot loop."""
