"""Prints the worker's STORE_BATCH statement as a pgbench command, from a
copy of worker/src/store/projection.rs (stdin): the batch ($1) generated in
SQL by batch.sql, the persist time ($2) now()."""
import pathlib
import re
import sys

source = sys.stdin.read()
constants = dict(re.findall(r'const (\w+): &str = "(.*?)";', source, re.S))
template = re.search(r'pub static STORE_BATCH.*?format!\(\s*"(.*?)"\s*\)', source, re.S).group(1)
statement = re.sub(r"\{(\w+)\}", lambda m: constants[m.group(1)], template)
batch = (pathlib.Path(__file__).parent / "batch.sql").read_text().strip()
statement = statement.replace("$1::text::jsonb", f"({batch})::jsonb").replace("$2", "now()")
# A pgbench command ends at its ';': drop SQL comment lines.
lines = [line for line in statement.splitlines() if not line.strip().startswith("--")]
print("\n".join(lines).strip() + ";")
