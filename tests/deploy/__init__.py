"""Static checks of the deployment files (Dockerfile, docker-compose.yml, deploy/), and
the facts operators rely on, one module per concern; files.py parses the files and
promql.py reads metric names out of PromQL.

A check that needs an external tool (hadolint, docker-compose, promtool,
kubernetes-validate, make) skips, saying how to get it, only when the tool is missing;
`make test` installs them first (`make test-tools` and the dev extra).
"""
