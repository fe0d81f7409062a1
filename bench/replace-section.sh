#!/usr/bin/env bash
# Puts a section into a Markdown report in place of its previous version:
#   bench/replace-section.sh NAME SECTION_FILE REPORT
# The section file starts with `<!-- NAME: ... -->` and ends with
# `<!-- /NAME -->`; without a previous version in REPORT it is appended.
# bench/run.sh keeps such sections when it rewrites BENCHMARKS.md.
set -euo pipefail
name=$1 section=$2 report=$3
touch "$report"
awk -v name="$name" -v section="$section" '
  index($0, "<!-- " name ":") == 1 { skipping = 1; while ((getline line < section) > 0) print line; done = 1; next }
  $0 == "<!-- /" name " -->" { skipping = 0; next }
  !skipping { print }
  END { if (!done) { print ""; while ((getline line < section) > 0) print line } }' "$report" >"$report.new"
mv "$report.new" "$report"
