"""Turns the worker's STORE_BATCH statement (stdin, as printed by
`cargo run -p worker --example store_statement`) into a pgbench command: the
batch ($1) generated in SQL by batch.sql beside this script, the persist
time ($2) now(). The first argument, if any, is the SQL expression of each
event's message SID (default: one of 200,000 SIDs in order, 'SM000…0042')."""
import pathlib
import sys

sid = sys.argv[1] if len(sys.argv) > 1 else "'SM' || lpad(floor(random() * 200000)::bigint::text, 32, '0')"
statement = sys.stdin.read().strip()
batch = (pathlib.Path(__file__).parent / "batch.sql").read_text().strip().replace("{message_sid}", sid)
statement = statement.replace("$1::text::jsonb", f"({batch})::jsonb").replace("$2", "now()")
# A pgbench command ends at its ';': drop SQL comment lines.
lines = [line for line in statement.splitlines() if not line.strip().startswith("--")]
print("\n".join(lines).strip() + ";")
