"""The project's infrastructure: broker, Prometheus, Grafana and deployment files, and (in
`infra.local`) the local Kafka broker and schema registry the tests, the benchmark and the
scripts run."""
