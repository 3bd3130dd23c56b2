#!/bin/sh
# Stands in for gurumee92/simple-app:v1 (no public source): answers "Hello World v1" on 8080.
# PORT and WWW exist so the tests can run this server outside a container.
exec httpd -f -p "${PORT:-8080}" -h "${WWW:-/www}"
