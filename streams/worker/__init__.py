"""The worker runtime: the Faust adapter, its web pages and metrics, and how a worker starts."""
