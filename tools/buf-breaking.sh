#!/bin/sh
# `buf breaking` for the contract: the working tree's proto/ against the last
# release tag (v*), or else against the parent commit, so a commit (or the
# uncommitted change on top of it) can never renumber or retype a field.
#
# A shallow CI clone (actions/checkout's depth 1) is deepened by one commit
# to find the parent; with no tag and no parent at all (a fresh repository)
# there is nothing to compare with, and it passes saying so.
set -eu
buf=${BUF:-node_modules/.bin/buf}

if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
    git fetch --quiet --deepen=1 2>/dev/null || true
fi
if tag=$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null); then
    against=".git#tag=$tag"
elif parent=$(git rev-parse --verify --quiet 'HEAD~1^{commit}'); then
    against=".git#ref=$parent"
else
    echo "buf-breaking: no release tag and no parent commit to compare with; nothing to check"
    exit 0
fi
echo "buf breaking --against '$against'"
exec "$buf" breaking --against "$against"
