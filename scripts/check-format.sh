#!/usr/bin/env bash
# Fails if a C file of ours is not as clang-format (Debian 12's, version 14)
# would write it with the repo's .clang-format. `scripts/check-format.sh --fix`
# rewrites them instead. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files 'src/*.[ch]' 'tests/*.[ch]' 'fuzz/*.[ch]' 'tools/*.[ch]' 'bench/*.[ch]')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
if ! clang-format --dry-run -Werror "${files[@]}" 2>/tmp/check-format.$$; then
  grep -o '^[^:]*\.[ch]' /tmp/check-format.$$ | sort -u | sed 's/^/not formatted: /'
  rm -f /tmp/check-format.$$
  echo "check-format: run scripts/check-format.sh --fix" >&2
  exit 1
fi
rm -f /tmp/check-format.$$
echo "check-format: ${#files[@]} files formatted"
