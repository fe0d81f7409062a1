"""Turns the worker's STORE_BATCH statement (stdin, as printed by
`cargo run -p worker --example store_statement`) into a pgbench command: the
batch ($1) generated in SQL by the batch file named as the first argument
(default: batch.sql beside this script), the persist time ($2) now()."""
import pathlib
import sys

statement = sys.stdin.read().strip()
batch_file = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).parent / "batch.sql"
batch = batch_file.read_text().strip()
statement = statement.replace("$1::text::jsonb", f"({batch})::jsonb").replace("$2", "now()")
# A pgbench command ends at its ';': drop SQL comment lines.
lines = [line for line in statement.splitlines() if not line.strip().startswith("--")]
print("\n".join(lines).strip() + ";")
