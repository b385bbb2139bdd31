#!/bin/sh
# The tenants pipeline, as a CI job runs it on every merge to the main branch:
#
#   1. plan    gates: exit 0 = nothing to do, 2 = changes pending, anything else fails
#   2. apply   makes the servers match the file; never drops a tenant (no
#              --allow-destroy: dropping data is a person's decision, not a merge's)
#   3. plan    again must exit 0: proof that the servers converged on the file
#   4. doctor  checks the isolation of what is there (exit 2 = a hazard: fail)
#
# Environment: DATABASE_URL (admin URL of the shared database) and APP_PASSWORD,
# from the pipeline's secrets; TENANTS, the command to run (default `tenants` on
# PATH; from a checkout: TENANTS="cargo run -q -p tenants-cli --"); TENANTS_FILE,
# the tenants file (default: tenants.toml next to this script).
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
file=${TENANTS_FILE:-$here/tenants.toml}
tenants=${TENANTS:-tenants}

echo "==> tenants plan -f $file"
status=0
$tenants plan -f "$file" || status=$?
case $status in
0)
    echo "==> nothing to apply"
    ;;
2)
    echo "==> tenants apply -f $file"
    $tenants apply -f "$file"

    echo "==> tenants plan -f $file (must be empty)"
    status=0
    $tenants plan -f "$file" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "ci: the servers did not converge on $file (plan exited $status)" >&2
        exit 1
    fi
    ;;
*)
    echo "ci: plan failed (exit $status): nothing was applied" >&2
    exit 1
    ;;
esac

echo "==> tenants doctor -f $file"
$tenants doctor -f "$file"
