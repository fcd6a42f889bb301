"""`tollgate diff OLD NEW`: what a policy change does, not which lines it touches.

sides.py materialises each side (a directory, or a git revision of one) and compiles it with the
real loader; bundle.py and access.py compare the two snapshots; replay.py re-prices the ledger
under NEW; render.py prints the report (rich, markdown, JSON); command.py is the sub-command.
See docs/gitops.md.
"""
