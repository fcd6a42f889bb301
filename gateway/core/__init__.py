"""The ground floor: types that many packages share and that import nothing of the gateway.

`usage.TokenUsage` (token counts as every provider module, billing and the ledger see them) and
`family.Family` (the API families a client or an upstream speaks). Layer order and what each
package holds: docs/architecture.md, "Packages and layers"; tests/test_import_layers.py enforces it.
"""
