"""The arq worker: pushes queued sync items to each company's ledger."""
