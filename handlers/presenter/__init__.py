"""Everything the bot says to people, built from jobs and results: one presenter for every transport.

`handlers.messages` holds the sentences; the modules here put them together from what a command
or a job produced (`jobs`: a job's card and status; `answers`: the answers to commands;
`blocks`: Slack Block Kit built with `slack_sdk.models.blocks`; `plan_card`: a plan's disaster
candidates; `results`: the engine's results as prose). Handlers and transports only pick which.
"""
