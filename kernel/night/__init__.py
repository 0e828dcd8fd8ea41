"""The night cycle ("the Twin Dream"): curate, train, merge, requantize, gate, deploy.

One module per step. So far: ``transcripts`` (bring past conversations into a
mind's ledger), ``redact`` (secrets and personal data out of training text)
and ``curate`` (the day's exchanges into a training set, per mind).
"""
