"""audit: advocase_audit_append() on PostgreSQL — an org's events join its chain in one
statement (lock the head, insert the events with their digests, move the head), so the
chain head is locked for that statement and the COMMIT only (no schema change on SQLite)

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-29 07:40:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0021'
down_revision: str | Sequence[str] | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# p_rows: a JSON array of the events, in order, each with the columns of audit_event
# but chain_id, seq, prev_digest and digest, plus "before" and "after": the event's
# canonical JSON around its seq, made by app.core.audit. The digest is SHA-256 over
# prev_digest, a newline, before, the seq in decimal and after (UTF-8): exactly what
# app.core.audit.compute_digest computes, and what `advocase audit verify` recomputes.
APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION advocase_audit_append(p_chain uuid, p_rows jsonb)
RETURNS TABLE(o_seq bigint, o_prev text, o_digest text)
LANGUAGE plpgsql AS $$
DECLARE
  v_seq bigint;
  v_prev text;
  v_digest text;
  v_row jsonb;
BEGIN
  INSERT INTO audit_chain_head AS head (chain_id, seq, digest)
    VALUES (p_chain, 0, repeat('0', 64))
    ON CONFLICT (chain_id) DO UPDATE SET chain_id = excluded.chain_id
    RETURNING head.seq, head.digest INTO v_seq, v_prev;
  FOR v_row IN SELECT value FROM jsonb_array_elements(p_rows) LOOP
    v_seq := v_seq + 1;
    v_digest := encode(sha256(convert_to(
      v_prev || E'\\n' || (v_row ->> 'before') || v_seq::text || (v_row ->> 'after'),
      'UTF8')), 'hex');
    INSERT INTO audit_event
      SELECT * FROM jsonb_populate_record(NULL::audit_event,
        (v_row - 'before' - 'after') || jsonb_build_object(
          'chain_id', p_chain, 'seq', v_seq, 'prev_digest', v_prev, 'digest', v_digest));
    o_seq := v_seq;
    o_prev := v_prev;
    o_digest := v_digest;
    RETURN NEXT;
    v_prev := v_digest;
  END LOOP;
  UPDATE audit_chain_head AS head SET seq = v_seq, digest = v_prev
    WHERE head.chain_id = p_chain;
END;
$$;
"""


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(APPEND_FUNCTION)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS advocase_audit_append(uuid, jsonb)")
