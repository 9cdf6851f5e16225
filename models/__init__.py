"""Speech models by role: `asr` (recognition), `audio` (before the model), `text` (after it),
`translation` and `voices` (the downstream agents' models)."""
