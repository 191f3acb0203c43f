"""The optional investigator: a bounded tool-calling loop over read-only tools (`tools`,
`loop`), and investigations of incidents with audit, Slack output and proposals (`service`)."""
