"""The Faust app, its agents, the settings object and the command line."""
